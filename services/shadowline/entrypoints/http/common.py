"""What the HTTP modules share: JSON responses, errors as responses, auth dependencies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.responses import Response
from fastapi.security.base import SecurityBase
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from shadowline.application.auth import Authenticator
from shadowline.domain.errors import FieldError, Forbidden, InvalidInput
from shadowline.domain.events import parse_time
from shadowline.domain.users import User
from shadowline.entrypoints.errors import MalformedBody, UnsupportedBody, refusal_of

NDJSON = "application/x-ndjson"
JSON = "application/json"


class ORJSONResponse(Response):
    """JSON rendered by orjson (FastAPI deprecated its own class of this name)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: Exception) -> ORJSONResponse:
    """An error as an HTTP response, by the one mapping (entrypoints.errors)."""
    refused = refusal_of(error)
    return ORJSONResponse(refused.body, status_code=refused.status, headers=refused.headers)


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
        header = request.headers.get("authorization")
        return await authenticator.authenticate(header, self.needs, source_of(request))


def source_of(request: Request) -> str:
    """The address failed logins are counted by (behind a proxy: the proxy's)."""
    return request.client.host if request.client else ""


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


async def body_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedBody([FieldError("$", f"malformed JSON: {error}")]) from error


# -- state-changing calls: JSON only, never cross-site -------------------------------------------

STATE_CHANGING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
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


class SameOriginJson:
    """A pure ASGI middleware for every state-changing call of the JSON API (DESIGN.md: they
    "take application/json bodies (or none) and refuse cross-site browser requests").

    A browser page on another origin can POST a `text/plain` or form body without a CORS
    preflight, and the browser adds the operator's remembered Basic credentials. So: a request
    whose Sec-Fetch-Site is cross-site or same-site, or whose Origin is neither this request's
    own (scheme and Host) nor the advertised URL's (a TLS proxy in front), gets 403; a body
    declared as anything but application/json gets 415. Clients that are not browsers (curl,
    httpx, the CLI, the instances' peer calls) send neither header and are unaffected; a body
    without any Content-Type is theirs too (a browser always sends one with a body). The HA
    screen's form posts (`exempt`) carry their own CSRF tokens and origin checks instead.
    """

    def __init__(self, app: ASGIApp, public_url: str, exempt: Callable[[str], bool]) -> None:
        self.app = app
        self._public_origin = origin_of_url(public_url)
        self._exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in STATE_CHANGING
            and not self._exempt(scope["path"])
            and (refusal := self._refusal(scope, Headers(scope=scope))) is not None
        ):
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> ORJSONResponse | None:
        site = headers.get("sec-fetch-site", "same-origin").lower()
        if site not in ("same-origin", "none"):
            return error_response(Forbidden(f"cross-site request refused (Sec-Fetch-Site {site})"))
        origin = headers.get("origin")
        if origin is not None:
            own = normal_origin(scope.get("scheme", "http"), headers.get("host", ""))
            if origin_of_url(origin) not in (own, self._public_origin):
                shown = origin[:100]
                return error_response(Forbidden(f"cross-site request refused (Origin {shown!r})"))
        declared = headers.get("content-type")
        if declared is not None and declared.split(";")[0].strip().lower() != JSON:
            shown = declared[:100]
            refused = f"state-changing calls take {JSON} bodies, not {shown!r}"
            return error_response(UnsupportedBody(refused))
        return None
