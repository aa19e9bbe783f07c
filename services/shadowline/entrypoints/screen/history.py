"""The HA screen's audit browser (role `auditor`): events, the configuration at a point, diffs.

The same ConfigService reads as the JSON API (`/events`, `/config?at=`, `/config/diff`), shown
as tables. A point in history is a position (digits) or an ISO-8601 time, as in the API. Bad
input is shown on the page (422), not as the API's JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shadowline.application.service import ConfigService
from shadowline.domain.errors import InvalidInput, NotFound
from shadowline.domain.events import Event
from shadowline.domain.records import EventFilter
from shadowline.entrypoints.deps import Service
from shadowline.entrypoints.screen.pages import page
from shadowline.entrypoints.screen.session import ScreenAuditor, ScreenUser
from shadowline.entrypoints.web import digits, moment_of, point_of

router = APIRouter(include_in_schema=False)

PAGE_DEFAULT, PAGE_MAX = 50, 500
EVENT_TYPES = (
    "ConfigPut",
    "ConfigDeleted",
    "HaEnabled",
    "ShadowConfirmed",
    "ShadowRemoved",
    "MasterPromoted",
    "SigningStarted",
)
FILTERS = ("kind", "name", "actor", "type", "since", "until")


class BadQuery(ValueError):
    """Raised when a query parameter of an audit page cannot be used; shown on the page."""


def _text(request: Request, field: str) -> str | None:
    value = request.query_params.get(field, "").strip()
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise BadQuery(f"{field} may not contain U+0000")
    return value or None


def _int(request: Request, field: str, default: int, low: int, high: int) -> int:
    value = _text(request, field)
    if value is None:
        return default
    # The length first: int() refuses more than 4,300 digits with ValueError (a 500).
    if not digits(value) or len(value) > len(str(high)) or not low <= int(value) <= high:
        raise BadQuery(f"{field} must be a whole number from {low} to {high}")
    return int(value)


def _point(value: str | None, field: str) -> dict[str, Any]:
    """A point in history as the API reads it (entrypoints.web.point_of); nothing is now."""
    return {} if value is None else point_of(value, field)


def _failed(
    request: Request, template: str, user: ScreenUser, error: Exception, **context: Any
) -> Response:
    status = 404 if isinstance(error, NotFound) else 422
    return page(request, template, status, user=user, error=str(error), **context)


# -- events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[Event]
    next_after: int | None  # where the next page starts, None at the end


async def read_page(
    service: ConfigService, after: int, limit: int, where: EventFilter
) -> EventPage:
    # An async generator (typed as an iterator): closed at once when the page is full.
    reading = cast(AsyncGenerator[Event, None], service.events(after, limit, where))
    async with contextlib.aclosing(reading) as events:
        found = [event async for event in events]
    return EventPage(found, found[-1].position if len(found) == limit else None)


@router.get("/ui/history", response_class=HTMLResponse)
async def history(request: Request, user: ScreenAuditor, service: Service) -> Response:
    query = {f: request.query_params.get(f, "") for f in FILTERS}
    context: dict[str, Any] = {"user": user, "query": query, "types": EVENT_TYPES}
    try:
        text = {f: _text(request, f) for f in FILTERS}
        after = _int(request, "after", 0, 0, 2**62)
        limit = _int(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        where = EventFilter(
            text["kind"],
            text["name"],
            text["actor"],
            moment_of(text["since"], "since") if text["since"] else None,
            moment_of(text["until"], "until") if text["until"] else None,
            (text["type"],) if text["type"] else (),
        )
        found = await read_page(service, after, limit, where)
    except (BadQuery, InvalidInput, NotFound) as error:
        return _failed(
            request, "history.html", **context, error=error, found=None, after=0, limit=0
        )
    return page(
        request, "history.html", **context, error=None, found=found, after=after, limit=limit
    )


# -- state at a point, and the difference of two -------------------------------------------------


@router.get("/ui/state", response_class=HTMLResponse)
async def state(request: Request, user: ScreenAuditor, service: Service) -> Response:
    at = request.query_params.get("at", "")
    try:
        position, items = await service.state(**_point(_text(request, "at"), "at"))
    except (BadQuery, InvalidInput, NotFound) as error:
        return _failed(request, "state.html", user, error, at=at, position=None, items={})
    return page(request, "state.html", user=user, error=None, at=at, position=position, items=items)


@router.get("/ui/diff", response_class=HTMLResponse)
async def diff(request: Request, user: ScreenAuditor, service: Service) -> Response:
    points = {
        "from": request.query_params.get("from", ""),
        "to": request.query_params.get("to", ""),
    }
    context: dict[str, Any] = {"user": user, "points": points}
    if not points["from"].strip():
        return page(request, "diff.html", **context, error=None, result=None)
    try:
        start = await service.resolve(**_point(_text(request, "from"), "from"))
        end = await service.resolve(**_point(_text(request, "to"), "to"))
        result = await service.diff(start, end)
    except (BadQuery, InvalidInput, NotFound) as error:
        return _failed(request, "diff.html", **context, error=error, result=None)
    return page(request, "diff.html", **context, error=None, result=result)
