"""What the HTTP modules share: JSON responses, the one error mapping, auth dependencies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.responses import Response
from fastapi.security.base import SecurityBase

from shadowline.adapters.local import User
from shadowline.domain.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotWritable,
    Unauthorized,
    Unavailable,
    VersionConflict,
)
from shadowline.domain.events import parse_time
from shadowline.instance.auth import Authenticator
from shadowline.instance.limits import BodyTooLarge

NDJSON = "application/x-ndjson"


class ORJSONResponse(Response):
    """JSON rendered by orjson (FastAPI deprecated its own class of this name)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class MalformedBody(InvalidInput):
    """Raised when a request body is not JSON at all (400, not 422)."""


def _error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> ORJSONResponse:
    return ORJSONResponse(body, status_code=status, headers=headers)


def error_response(error: Exception) -> ORJSONResponse:
    """The one mapping from shadowline's exceptions to HTTP."""
    match error:
        case MalformedBody():
            return _error(400, {"error": str(error), "errors": [e.__dict__ for e in error.errors]})
        case InvalidInput():
            return _error(
                422, {"error": "invalid input", "errors": [e.__dict__ for e in error.errors]}
            )
        case VersionConflict():
            return _error(
                409, {"error": str(error), "expected": error.expected, "version": error.actual}
            )
        case AlreadyExists() | Conflict():
            return _error(409, {"error": str(error)})
        case NotFound():
            return _error(404, {"error": str(error)})
        case NotWritable():
            return _error(503, {"error": str(error), "master": error.master_url})
        case Unauthorized():
            return _error(
                401, {"error": str(error)}, {"WWW-Authenticate": 'Basic realm="shadowline"'}
            )
        case Forbidden():
            return _error(403, {"error": str(error)})
        case BodyTooLarge():
            return _error(413, {"error": "request body too large"})
        case Unavailable():
            return _error(503, {"error": str(error), "master": None}, {"Retry-After": "1"})
        case _:
            return _error(500, {"error": f"internal error: {error.__class__.__name__}"})


class BasicAuth(SecurityBase):
    """The authenticated user of a request, holding at least the role `needs` (else 401/403).

    A security scheme rather than a function with an `Authorization` Header() parameter: OpenAPI
    documents it as HTTP Basic, and FastAPI calls it with the request alone, so no per-request
    parameter validation runs for a header that `Authenticator` parses anyway.
    """

    def __init__(self, needs: str) -> None:
        self.model = HTTPBaseModel(scheme="basic")
        self.scheme_name = "HTTPBasic"
        self.needs = needs

    async def __call__(self, request: Request) -> User:
        authenticator: Authenticator = request.app.state.auth
        return await authenticator.authenticate(request.headers.get("authorization"), self.needs)


Viewer = Annotated[User, Depends(BasicAuth("viewer"))]
Auditor = Annotated[User, Depends(BasicAuth("auditor"))]
Admin = Annotated[User, Depends(BasicAuth("admin"))]


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


def point_of(value: str, field: str) -> dict[str, Any]:
    """A point in history, as ConfigService takes it: a position (digits) or an ISO-8601 time."""
    if digits(value):
        return {"at": int(value)}
    return {"as_of": moment_of(value, field)}


async def body_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedBody([FieldError("$", f"malformed JSON: {error}")]) from error
