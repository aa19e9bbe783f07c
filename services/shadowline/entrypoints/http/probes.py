"""What load balancers, Prometheus and auditors ask: /health, /master, /shadow, /metrics and
/audit/verify (paths fixed by DESIGN.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowline.application import audit
from shadowline.application.service import ConfigService
from shadowline.entrypoints.deps import HA, Metrics, Service, SettingsDep
from shadowline.entrypoints.http.common import Auditor, Viewer
from shadowline.entrypoints.http.openapi import READ, Health, answers
from shadowline.entrypoints.http.openapi_ha import AuditFinding
from shadowline.entrypoints.web import ORJSONResponse

router = APIRouter()


def health_doc(service: ConfigService, instance: str) -> dict[str, Any]:
    role = service.role
    return {
        "instance": instance,
        "role": role.shown,
        "epoch": role.epoch,
        "position": service.writer.position,
    }


@router.get("/health", responses=answers(Health))
async def health(service: Service, settings: SettingsDep) -> dict[str, Any]:
    return health_doc(service, settings.instance)


# 503 carries the same body as 200: a load balancer reads the status, a person the role.
_PROBE = {**answers(Health), 503: {"model": Health, "description": "not the writable master"}}
_SHADOW = {**answers(Health), 503: {"model": Health, "description": "not an in-sync shadow"}}


@router.get("/master", responses=_PROBE)
async def master_probe(service: Service, settings: SettingsDep) -> ORJSONResponse:
    status = 200 if service.role.writable else 503
    return ORJSONResponse(health_doc(service, settings.instance), status_code=status)


@router.get("/shadow", responses=_SHADOW)
async def shadow_probe(service: Service, ha: HA, settings: SettingsDep) -> ORJSONResponse:
    replica = ha.replicas.current
    in_sync = replica is not None and replica.in_sync(settings.takeover_delay)
    doc = health_doc(service, settings.instance)
    return ORJSONResponse(doc, status_code=200 if in_sync else 503)


@router.get("/audit/verify", responses=answers(AuditFinding, *READ, 503))
async def audit_verify(_: Auditor, service: Service, settings: SettingsDep) -> dict[str, Any]:
    """Recompute the hash chain and the state from the whole log; compare with what is served
    and report the first difference, if any (application.audit)."""
    secret = settings.cluster_secret
    return await audit.verify(
        service.store, secret.get_secret_value() if secret else None, settings.cluster
    )


@router.get("/metrics", responses=answers(None, *READ, media=CONTENT_TYPE_LATEST))
async def get_metrics(_: Viewer, ha: HA, metrics: Metrics) -> Response:
    metrics.refresh(await ha.status())
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
