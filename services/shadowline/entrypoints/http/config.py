"""The configuration API (paths fixed by DESIGN.md): items, the state at a point, diffs, events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import uuid4

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from shadowline.domain.errors import FieldError, InvalidInput
from shadowline.domain.events import envelope
from shadowline.domain.records import EventFilter
from shadowline.domain.users import User
from shadowline.entrypoints.deps import Service
from shadowline.entrypoints.http.common import NDJSON, Admin, Auditor, body_json
from shadowline.entrypoints.web import MAX_POSITION, ORJSONResponse, digits, moment_of, point_of

router = APIRouter()

MAX_VERSION = 2**31 - 1  # versions are PostgreSQL integers: no item can have a larger one
MAX_REQUEST_ID = 200  # characters of X-Request-Id: refused beyond, never cut (it is an id)
MAX_REASON = 500  # characters of X-Reason, as the event schema and config commands allow

IfMatch = Annotated[str | None, Header()]


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


# -- writes --------------------------------------------------------------------------------------


@router.put("/config/{kind}/{name}")
async def put_item(
    kind: str, name: str, request: Request, user: Admin, service: Service, if_match: IfMatch = None
) -> ORJSONResponse:
    value = await body_json(request)
    result = await service.put(kind, name, value, _expected_version(if_match), meta(user, request))
    return ORJSONResponse(
        result.as_dict(),
        status_code=201 if result.created else 200,
        headers={"ETag": f'"{result.version}"'},
    )


@router.delete("/config/{kind}/{name}")
async def delete_item(
    kind: str, name: str, request: Request, user: Admin, service: Service, if_match: IfMatch = None
) -> dict[str, Any]:
    result = await service.delete(kind, name, _expected_version(if_match), meta(user, request))
    return result.as_dict()


# -- reads ---------------------------------------------------------------------------------------


@router.get("/config/diff")
async def config_diff(
    _: Auditor,
    service: Service,
    start: Annotated[str, Query(alias="from")],
    end: Annotated[str | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    first = await service.resolve(**point_of(start, "from"))
    last = await service.resolve(**point_of(end, "to")) if end else await service.resolve()
    return await service.diff(first, last)


@router.get("/config/{kind}/{name}")
async def get_item(kind: str, name: str, _: Auditor, service: Service) -> ORJSONResponse:
    value, version = await service.get(kind, name)
    return ORJSONResponse({"value": value, "version": version}, headers={"ETag": f'"{version}"'})


@router.get("/config")
async def get_config(
    _: Auditor,
    service: Service,
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


@router.get("/events")
async def get_events(
    _: Auditor,
    service: Service,
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
