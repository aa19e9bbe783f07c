"""The HTTP API of an instance (paths fixed by DESIGN.md). Errors map to status codes here only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import uuid4

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowline import __version__
from shadowline.adapters.local import User
from shadowline.adapters.store import EventFilter
from shadowline.application import audit
from shadowline.application.auth import Authenticator, LoginThrottle
from shadowline.application.ha import HaService
from shadowline.application.metrics import Metrics
from shadowline.application.service import ConfigService
from shadowline.domain.errors import FieldError, InvalidInput, ShadowlineError
from shadowline.domain.events import envelope
from shadowline.entrypoints.http.common import (
    MAX_POSITION,
    NDJSON,
    Admin,
    Auditor,
    ORJSONResponse,
    SameOriginJson,
    Viewer,
    body_json,
    digits,
    error_response,
    moment_of,
    point_of,
)
from shadowline.entrypoints.http.ha import router as ha_router
from shadowline.entrypoints.http.limits import BodyTooLarge
from shadowline.entrypoints.screen.routes import include_screen, is_screen_form
from shadowline.settings import Settings

MAX_VERSION = 2**31 - 1  # versions are PostgreSQL integers: no item can have a larger one


MAX_REQUEST_ID = 200  # characters of X-Request-Id: refused beyond, never cut (it is an id)
MAX_REASON = 500  # characters of X-Reason, as the event schema and config commands allow


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    token = if_match.strip().removeprefix("W/").strip('"')
    # Length first: int() of more than 4,300 digits raises instead of answering.
    if not digits(token) or len(token) > 10 or int(token) > MAX_VERSION:
        raise InvalidInput([FieldError("If-Match", 'must be a version, e.g. "3"')])
    return int(token)


def _header_text(request: Request, header: str, most: int) -> str | None:
    """A header recorded in the event's metadata: printable text of at most `most` characters,
    else InvalidInput (422) naming the header."""
    value = request.headers.get(header)
    if value is None or value == "":
        return None
    if len(value) > most:
        raise InvalidInput([FieldError(header, f"at most {most} characters, got {len(value)}")])
    if not value.isprintable():
        raise InvalidInput([FieldError(header, "may not contain control characters")])
    return value


def meta(user: User, request: Request) -> dict[str, Any]:
    """Who made a change and why, for the event's metadata (X-Request-Id, X-Reason)."""
    found: dict[str, Any] = {
        "actor": user.name,
        "request_id": _header_text(request, "X-Request-Id", MAX_REQUEST_ID) or str(uuid4()),
    }
    if reason := _header_text(request, "X-Reason", MAX_REASON):
        found["reason"] = reason
    return found


def _no_nul(**fields: str | None) -> None:
    # PostgreSQL text cannot hold U+0000: refused here, before a stream's 200 has gone out.
    found = [
        FieldError(k, "may not contain U+0000") for k, v in fields.items() if v and "\x00" in v
    ]
    if found:
        raise InvalidInput(found)


def create_app(
    *,
    service: ConfigService,
    ha: HaService,
    auth: Authenticator,
    metrics: Metrics,
    settings: Settings,
) -> FastAPI:
    instance = settings.instance
    app = FastAPI(
        title="shadowline",
        version=__version__,
        default_response_class=ORJSONResponse,
        description="Master/shadow high availability for configuration.",
    )
    app.state.auth = auth
    auth.throttle = LoginThrottle(settings.login_max_failures, settings.login_failure_window)
    app.state.ha = ha
    app.state.service = service
    app.state.settings = settings

    for error_class in (ShadowlineError, BodyTooLarge):
        app.add_exception_handler(error_class, lambda _r, e: error_response(e))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> ORJSONResponse:
        fields = [
            FieldError(".".join(str(p) for p in e.get("loc", ())), e.get("msg", "invalid"))
            for e in error.errors()
        ]
        return error_response(InvalidInput(fields))

    def health_doc() -> dict[str, Any]:
        r = service.role
        return {
            "instance": instance,
            "role": r.shown,
            "epoch": r.epoch,
            "position": service.writer.position,
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return health_doc()

    @app.get("/master")
    async def master_probe() -> ORJSONResponse:
        return ORJSONResponse(health_doc(), status_code=200 if service.role.writable else 503)

    @app.get("/shadow")
    async def shadow_probe() -> ORJSONResponse:
        replica = ha.replica
        in_sync = replica is not None and replica.in_sync(settings.takeover_delay)
        return ORJSONResponse(health_doc(), status_code=200 if in_sync else 503)

    @app.put("/config/{kind}/{name}")
    async def put_item(
        kind: str,
        name: str,
        request: Request,
        user: Admin,
        if_match: Annotated[str | None, Header()] = None,
    ) -> ORJSONResponse:
        value = await body_json(request)
        result = await service.put(
            kind, name, value, _expected_version(if_match), meta(user, request)
        )
        return ORJSONResponse(
            result.as_dict(),
            status_code=201 if result.created else 200,
            headers={"ETag": f'"{result.version}"'},
        )

    @app.delete("/config/{kind}/{name}")
    async def delete_item(
        kind: str,
        name: str,
        request: Request,
        user: Admin,
        if_match: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        result = await service.delete(kind, name, _expected_version(if_match), meta(user, request))
        return result.as_dict()

    @app.get("/config/diff")
    async def config_diff(
        _: Auditor,
        start: Annotated[str, Query(alias="from")],
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> dict[str, Any]:
        first = await service.resolve(**point_of(start, "from"))
        last = await service.resolve(**point_of(end, "to")) if end else await service.resolve()
        return await service.diff(first, last)

    @app.get("/config/{kind}/{name}")
    async def get_item(kind: str, name: str, _: Auditor) -> ORJSONResponse:
        value, version = await service.get(kind, name)
        return ORJSONResponse(
            {"value": value, "version": version}, headers={"ETag": f'"{version}"'}
        )

    @app.get("/config")
    async def get_config(
        _: Auditor,
        at: Annotated[int | None, Query(ge=0, le=MAX_POSITION)] = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        if at is not None and as_of is not None:
            raise InvalidInput([FieldError("as_of", "give either at or as_of, not both")])
        moment = moment_of(as_of, "as_of") if as_of is not None else None
        position, items = await service.state(at=at, as_of=moment)
        doc: dict[str, Any] = {"position": position, "items": items}
        if at is None and moment is None:
            doc["local"] = await service.local.all()
        return doc

    @app.get("/events")
    async def get_events(
        _: Auditor,
        after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
        limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
        kind: str | None = None,
        name: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        type: Annotated[list[str] | None, Query()] = None,  # repeatable: ?type=A&type=B
        wait: Annotated[float, Query(ge=0, le=60)] = 0,
    ) -> StreamingResponse:
        _no_nul(kind=kind, name=name, actor=actor, type="".join(type or ()))
        where = EventFilter(
            kind,
            name,
            actor,
            moment_of(since, "since") if since else None,
            moment_of(until, "until") if until else None,
            tuple(type or ()),
        )
        if wait:
            await service.wait_for(after, wait)

        async def lines() -> AsyncIterator[bytes]:
            async for event in service.events(after, limit, where):
                yield orjson.dumps(envelope(event)) + b"\n"

        return StreamingResponse(lines(), media_type=NDJSON)

    @app.get("/audit/verify")
    async def audit_verify(_: Auditor) -> dict[str, Any]:
        """Recompute the hash chain and the state from the whole log; compare with what is served
        and report the first difference, if any (instance.audit)."""
        secret = settings.cluster_secret
        return await audit.verify(
            service.store, secret.get_secret_value() if secret else None, settings.cluster
        )

    @app.get("/metrics")
    async def get_metrics(_: Viewer) -> Response:
        metrics.refresh(await ha.status())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    include_screen(app)  # the High Availability screen at GET / (instance.screen)
    app.add_middleware(SameOriginJson, public_url=settings.public_url, exempt=is_screen_form)

    # Last: routes are matched in order, and the config writes should not first be tried
    # against every /ha route (no path here overlaps one there, so the order changes nothing else).
    app.include_router(ha_router)
    return app
