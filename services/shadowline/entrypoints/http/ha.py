"""HTTP routes of HA: setup and status for people, signed peer calls between the instances."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from shadowline.application.replica import FETCH_PAGE
from shadowline.domain.errors import FieldError, Forbidden, InvalidInput, NotFound
from shadowline.domain.events import envelope, format_time
from shadowline.domain.promote import PromoteCommand
from shadowline.domain.records import EventFilter
from shadowline.domain.state import digest
from shadowline.entrypoints.deps import HA, FailoverDep, Log, PreflightDep, Service
from shadowline.entrypoints.http.common import NDJSON, Admin, Auditor, Viewer, body_json
from shadowline.entrypoints.http.openapi import READ, WRITE, HaStatus, answers
from shadowline.entrypoints.http.openapi_ha import (
    ACK,
    REGISTER,
    Acked,
    ChainAt,
    Fork,
    PeerAbout,
    PeerCheck,
    PreflightAnswer,
    Promoted,
    Quarantine,
    Registered,
    ShadowRemoved,
    promote_command,
)
from shadowline.entrypoints.http.peer import CALLER, REFUSAL

router = APIRouter()

HEX64 = re.compile(r"[0-9a-f]{64}")


async def _peer(request: Request) -> str:
    """The calling instance, when the request carries a valid, fresh cluster signature (checked
    by entrypoints.http.peer, which also authenticates the answer)."""
    caller = request.scope.get(CALLER)
    if caller is None:
        refusal = (
            request.scope.get(REFUSAL) or "instance-to-instance call without a cluster signature"
        )
        raise Forbidden(refusal)
    return str(caller)


Peer = Annotated[str, Depends(_peer)]


async def _optional_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    doc = await body_json(request)
    if not isinstance(doc, dict):
        raise InvalidInput([FieldError("$", "must be a JSON object")])
    return doc


# After the caller (Admin, Peer) in a signature: FastAPI solves dependencies in order, so a
# caller who may not call is refused before the body is even read.
Body = Annotated[dict[str, Any], Depends(_optional_body)]  # also entrypoints.http.switch


def body_doc(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself (Body, body_json)."""
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


_ENABLE = {"type": "object", "properties": {"auto_confirm": {"type": "boolean"}}}
_CONFIRM = {"type": "object", "properties": {"shadow": {"type": ["string", "null"]}}}
_MAINTENANCE = {
    "type": "object",
    "properties": {"on": {"type": "boolean"}},
    "required": ["on"],
}
_JOIN = {
    "type": "object",
    "properties": {k: {"type": "string"} for k in ("master_url", "user", "password")},
    "required": ["master_url", "user", "password"],
}


# -- for people ----------------------------------------------------------------------------------


@router.get("/ha", responses=answers(HaStatus, *READ))
async def ha_status(ha: HA, _: Viewer) -> dict[str, Any]:
    return await ha.status()


@router.post("/ha/enable", responses=answers(HaStatus, *WRITE), openapi_extra=body_doc(_ENABLE))
async def ha_enable(ha: HA, user: Admin, body: Body) -> dict[str, Any]:
    auto_confirm = body.get("auto_confirm", False)
    if not isinstance(auto_confirm, bool):
        raise InvalidInput([FieldError("$.auto_confirm", "must be a boolean")])
    return await ha.enable(auto_confirm, user.name)


@router.post("/ha/join", responses=answers(HaStatus, *WRITE), openapi_extra=body_doc(_JOIN, True))
async def ha_join(ha: HA, _: Admin, body: Body) -> dict[str, Any]:
    missing = [f for f in ("master_url", "user", "password") if not isinstance(body.get(f), str)]
    if missing:
        raise InvalidInput([FieldError(f"$.{f}", "required string") for f in missing])
    return await ha.join(body["master_url"], body["user"], body["password"])


@router.post("/ha/confirm", responses=answers(HaStatus, *WRITE), openapi_extra=body_doc(_CONFIRM))
async def ha_confirm(ha: HA, user: Admin, body: Body) -> dict[str, Any]:
    shadow = body.get("shadow")
    if shadow is not None and not isinstance(shadow, str):
        raise InvalidInput([FieldError("$.shadow", "must be an instance name or null")])
    return await ha.confirm(shadow, user.name)


@router.delete("/ha/shadow", responses=answers(ShadowRemoved, *WRITE))
async def ha_forget(ha: HA, user: Admin) -> dict[str, Any]:
    return await ha.forget(user.name)


@router.post(
    "/ha/maintenance",
    responses=answers(HaStatus, *WRITE),
    openapi_extra=body_doc(_MAINTENANCE, True),
)
async def ha_maintenance(ha: HA, user: Admin, body: Body) -> dict[str, Any]:
    if not isinstance(body.get("on"), bool):
        raise InvalidInput([FieldError("$.on", "required boolean")])
    return await ha.maintenance(body["on"], user.name)


@router.get("/ha/quarantine", responses=answers(Quarantine, *READ))
async def ha_quarantine(store: Log, _: Auditor) -> dict[str, Any]:
    rows = await store.quarantined()
    for row in rows:
        row["chain"] = row["chain"].hex()
        row["signature"] = row["signature"].hex() if row.get("signature") else None
        row["id"] = str(row["id"])
        for moment in ("recorded_at", "quarantined_at"):
            row[moment] = format_time(row[moment])
    return {"count": len(rows), "events": rows}


@router.get("/ha/verify", responses=answers(PeerCheck, *READ, 404, 409, 503))
async def ha_verify(ha: HA, _: Auditor) -> dict[str, Any]:
    return await ha.verify()


@router.get("/ha/preflight", responses=answers(PreflightAnswer, *READ))
async def ha_preflight(_: Viewer, preflight: PreflightDep) -> dict[str, Any]:
    """Would a failover succeed now: each check a verdict and a reason (application.preflight)."""
    return await preflight.run()


# -- between the instances -----------------------------------------------------------------------


@router.get("/ha/peer/about", responses=answers(PeerAbout, *READ))
async def peer_about(_: Peer, preflight: PreflightDep) -> dict[str, Any]:
    """What the peer's preflight needs of this instance: version, timings, clock, lag."""
    return await preflight.about()


@router.post(
    "/ha/peer/register",
    responses=answers(Registered, *WRITE),
    openapi_extra=body_doc(REGISTER, True),
)
async def peer_register(ha: HA, _: Admin, caller: Peer, body: Body) -> dict[str, Any]:
    if body.get("instance") != caller:
        raise InvalidInput([FieldError("$.instance", "must be the calling instance")])
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise InvalidInput([FieldError("$.url", "must be the shadow's http(s) URL")])
    return await ha.register(body)


@router.post("/ha/peer/ack", responses=answers(Acked, *WRITE), openapi_extra=body_doc(ACK, True))
async def peer_ack(ha: HA, caller: Peer, body: Body) -> dict[str, Any]:
    position = body.get("position")
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= 2**62:
        raise InvalidInput([FieldError("$.position", "must be a position (integer >= 0)")])
    chain, diverged = body.get("chain"), body.get("diverged")
    if (chain is not None or position > 0) and not (
        isinstance(chain, str) and HEX64.fullmatch(chain)
    ):
        raise InvalidInput([FieldError("$.chain", "must be 64 hex digits (the chain at position)")])
    if diverged is not None and not isinstance(diverged, dict):
        raise InvalidInput([FieldError("$.diverged", "must be an object")])
    return await ha.shadow_ack(caller, position, bytes.fromhex(chain) if chain else None, diverged)


@router.post(
    "/ha/peer/promote",
    responses=answers(Promoted, *WRITE),
    openapi_extra=body_doc(promote_command(), True),
)
async def peer_promote(failover: FailoverDep, caller: Peer, body: Body) -> dict[str, Any]:
    return await failover.promote(PromoteCommand.parse(body), via=f"http from {caller}")


@router.get("/ha/peer/fork", responses=answers(Fork, *READ, 404))
async def peer_fork(
    ha: HA, store: Log, _: Peer, after_epoch: Annotated[int, Query(ge=0, le=2**31 - 1)]
) -> dict[str, Any]:
    """Where this master's history forked from an older epoch: an old master rejoining asks."""
    event = await store.promotion_after(after_epoch)
    if event is None:
        raise NotFound(f"no promotion after epoch {after_epoch} in this log")
    fork = int(event.data["fork_position"])
    return {**await ha.chain_at(fork), "fork_position": fork, "epoch": event.epoch}


@router.get("/ha/peer/chain", responses=answers(ChainAt, *READ, 404))
async def peer_chain(
    ha: HA, _: Peer, at: Annotated[int | None, Query(ge=0, le=2**62)] = None
) -> dict[str, Any]:
    return await ha.chain_at(ha.position if at is None else at)


@router.get("/ha/peer/events", responses=answers(None, *READ, media=NDJSON))
async def peer_events(
    service: Service,
    _: Peer,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10 * FETCH_PAGE)] = 1000,  # a page, bounded
) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for event in service.events(after, limit, EventFilter(), page=5000):
            yield orjson.dumps(envelope(event)) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)


@router.get("/ha/peer/image", responses=answers(None, *READ, media=NDJSON))
async def peer_image(store: Log, _: Peer) -> StreamingResponse:
    """Header (position, chain, epoch), one line per item row, then a trailer with the SHA-256
    of the row lines and the state digest, so the shadow can refuse a corrupt image."""
    image = await store.image()

    async def lines() -> AsyncIterator[bytes]:
        hasher = hashlib.sha256()
        head = {"position": image.position, "chain": image.chain.hex(), "epoch": image.epoch}
        yield orjson.dumps(head) + b"\n"
        for row in image.rows:
            line = orjson.dumps({**row, "updated_at": format_time(row["updated_at"])})
            hasher.update(line)
            yield line + b"\n"
        yield orjson.dumps({"sha256": hasher.hexdigest(), "digest": digest(image.state)}) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)
