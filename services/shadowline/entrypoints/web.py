"""What the JSON API and the HA screen share: JSON responses, errors as responses, the client's
address, origins, and the query values both read (positions, times, points in history)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import Request
from fastapi.responses import Response

from shadowline.domain.errors import FieldError, InvalidInput
from shadowline.domain.events import parse_time
from shadowline.entrypoints.errors import refusal_of


class ORJSONResponse(Response):
    """JSON rendered by orjson (FastAPI deprecated its own class of this name)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: Exception) -> ORJSONResponse:
    """An error as an HTTP response, by the one mapping (entrypoints.errors)."""
    refused = refusal_of(error)
    return ORJSONResponse(refused.body, status_code=refused.status, headers=refused.headers)


def source_of(request: Request) -> str:
    """The address failed logins are counted by (behind a proxy: the proxy's)."""
    return request.client.host if request.client else ""


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def normal_origin(scheme: str, netloc: str) -> str:
    """scheme://host[:port] as browsers send it in Origin: lower case, no default port."""
    scheme, netloc = scheme.lower(), netloc.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(default):
        netloc = netloc.removesuffix(default)
    return f"{scheme}://{netloc}"


def origin_of_url(url: str) -> str:
    parts = urlsplit(url)
    return normal_origin(parts.scheme, parts.netloc) if parts.scheme else url.lower()


def digits(value: str) -> bool:
    # str.isdigit() alone also admits '²' and other digits that int() refuses.
    return value.isascii() and value.isdigit()


def moment_of(value: str, field: str) -> datetime:
    """An ISO-8601 time of a query parameter, in UTC (InvalidInput names `field`)."""
    try:
        moment = parse_time(value)
    except ValueError as error:
        raise InvalidInput([FieldError(field, f"not an ISO-8601 time: {value!r}")]) from error
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # Within hours of year 1 or 9999 with an offset: in UTC it is past the end of the
        # calendar, and before (or after) every event, like the calendar's end itself.
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


MAX_POSITION = 2**63 - 1  # positions are PostgreSQL bigints


def position_of(value: str, field: str, most: int = MAX_POSITION) -> int:
    """A whole number of a query parameter from 0 to `most` (InvalidInput names `field`).
    The length is checked first: int() refuses more than 4,300 digits with ValueError."""
    if not digits(value) or len(value) > len(str(most)) or int(value) > most:
        raise InvalidInput([FieldError(field, f"must be a whole number from 0 to {most}")])
    return int(value)


def point_of(value: str, field: str) -> dict[str, Any]:
    """A point in history, as ConfigService takes it: a position (digits) or an ISO-8601 time."""
    if digits(value):
        return {"at": position_of(value, field)}
    return {"as_of": moment_of(value, field)}
