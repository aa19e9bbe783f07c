"""The configuration API (paths fixed by DESIGN.md): items, the state at a point, diffs, events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from uuid import uuid4

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from shadowline.domain.errors import FieldError, InvalidInput
from shadowline.domain.events import envelope
from shadowline.domain.records import EventFilter
from shadowline.domain.users import User
from shadowline.entrypoints.deps import Service
from shadowline.entrypoints.http.common import NDJSON, Admin, Auditor, body_json
from shadowline.entrypoints.http.openapi import READ, WRITE, Diff, Item, State, WriteResult, answers
from shadowline.entrypoints.web import MAX_POSITION, ORJSONResponse, moment_of, point_of

router = APIRouter()

MAX_VERSION = 2**31 - 1  # versions are PostgreSQL integers: no item can have a larger one
MAX_REQUEST_ID = 200  # characters of X-Request-Id: refused beyond, never cut (it is an id)
MAX_REASON = 500  # characters of X-Reason, as the event schema and config commands allow

# A version from 0 to MAX_VERSION (2**31 - 1) without leading zeros, spelled out digit by digit
# so that the OpenAPI document states exactly what is accepted.
_VERSION = (
    r"0|[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]"
    r"|214748364[0-7]"
)
# An entity tag as HTTP spells it ("3", weak W/"3") or the bare version (3).
ETAG = re.compile(rf'(?:W/)?"(?P<quoted>{_VERSION})"|(?P<bare>{_VERSION})')
# What a header recorded in the event's metadata may hold: printable ISO-8859-1 (HTTP's header
# charset; Python's str.isprintable() refuses the rest: controls, no-break space, soft hyphen).
TEXT = r"^[\x20-\x7e\xa1-\xac\xae-\xff]*$"

IfMatch = Annotated[
    str | None,
    Header(
        # In the document only: _expected_version checks it and says what was wrong in words.
        json_schema_extra={"pattern": rf"^[ \t]*(?:{ETAG.pattern})[ \t]*$"},
        description='the version the item must have now, e.g. "3" (409 if it has another)',
    ),
]
IfNoneMatch = Annotated[
    Literal["*"] | None,
    Header(description="`*`: create only (412 if the item exists)"),
]
RequestId = Annotated[
    str | None,
    Header(
        alias="X-Request-Id",
        max_length=MAX_REQUEST_ID,
        pattern=TEXT,
        description="recorded in the event's metadata (default: a new UUID)",
    ),
]
Reason = Annotated[
    str | None,
    Header(
        alias="X-Reason",
        max_length=MAX_REASON,
        pattern=TEXT,
        description="why: recorded in the event's metadata",
    ),
]


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    found = ETAG.fullmatch(if_match.strip())
    if found is None:
        raise InvalidInput([FieldError("If-Match", 'must be a version, e.g. "3"')])
    return int(found["quoted"] or found["bare"])


def meta(user: User, request_id: str | None, reason: str | None) -> dict[str, Any]:
    """Who made a change and why, for the event's metadata (X-Request-Id, X-Reason; FastAPI
    has checked their length and characters against the headers' declarations)."""
    found: dict[str, Any] = {"actor": user.name, "request_id": request_id or str(uuid4())}
    if reason:
        found["reason"] = reason
    return found


# PostgreSQL text cannot hold U+0000: refused (422) before a stream's 200 has gone out.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str | None, Query(pattern=NO_NUL)]
NoNul = Annotated[str, StringConstraints(pattern=NO_NUL)]


# -- writes --------------------------------------------------------------------------------------


# The body's schema is the kind's: the OpenAPI document has one PUT path per kind
# (entrypoints.http.openapi.config_kind_paths).
@router.put("/config/{kind}/{name}", responses=answers(WriteResult, *WRITE, 412, created=True))
async def put_item(
    kind: str,
    name: str,
    request: Request,
    user: Admin,
    service: Service,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
    request_id: RequestId = None,
    reason: Reason = None,
) -> ORJSONResponse:
    value = await body_json(request)
    expected, absent = _expected_version(if_match), if_none_match is not None
    facts = meta(user, request_id, reason)
    result = await service.put(kind, name, value, expected, facts, only_if_absent=absent)
    return ORJSONResponse(
        result.as_dict(),
        status_code=201 if result.created else 200,
        headers={"ETag": f'"{result.version}"'},
    )


@router.delete("/config/{kind}/{name}", responses=answers(WriteResult, *WRITE, 404))
async def delete_item(
    kind: str,
    name: str,
    user: Admin,
    service: Service,
    if_match: IfMatch = None,
    request_id: RequestId = None,
    reason: Reason = None,
) -> dict[str, Any]:
    facts = meta(user, request_id, reason)
    result = await service.delete(kind, name, _expected_version(if_match), facts)
    return result.as_dict()


# -- reads ---------------------------------------------------------------------------------------


@router.get("/config/diff", responses=answers(Diff, *READ, 404))
async def config_diff(
    _: Auditor,
    service: Service,
    start: Annotated[str, Query(alias="from")],
    end: Annotated[str | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    first = await service.resolve(**point_of(start, "from"))
    last = (
        await service.resolve(**point_of(end, "to")) if end is not None else await service.resolve()
    )
    return await service.diff(first, last)


@router.get("/config/{kind}/{name}", responses=answers(Item, *READ, 404))
async def get_item(kind: str, name: str, _: Auditor, service: Service) -> ORJSONResponse:
    value, version = await service.get(kind, name)
    return ORJSONResponse({"value": value, "version": version}, headers={"ETag": f'"{version}"'})


@router.get("/config", responses=answers(State, *READ, 404))
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


@router.get("/events", responses=answers(None, *READ, media=NDJSON))
async def get_events(
    _: Auditor,
    service: Service,
    after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
    kind: Text = None,
    name: Text = None,
    actor: Text = None,
    since: str | None = None,
    until: str | None = None,
    type: Annotated[list[NoNul] | None, Query()] = None,  # repeatable: ?type=A&type=B
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
) -> StreamingResponse:
    where = EventFilter(
        kind,
        name,
        actor,
        moment_of(since, "since") if since is not None else None,
        moment_of(until, "until") if until is not None else None,
        tuple(type or ()),
    )
    if wait:
        await service.wait_for(after, wait)

    async def lines() -> AsyncIterator[bytes]:
        async for event in service.events(after, limit, where):
            yield orjson.dumps(envelope(event)) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)
