"""What the JSON API's modules share: media types, Basic auth by role, JSON bodies, and the
same-origin rule for state-changing calls (what the HA screen shares too is in entrypoints.web)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.security.base import SecurityBase
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from shadowline.application.auth import Authenticator
from shadowline.domain.errors import FieldError, Forbidden
from shadowline.domain.users import User
from shadowline.entrypoints.errors import MalformedBody, UnsupportedBody
from shadowline.entrypoints.web import (
    ORJSONResponse,
    error_response,
    normal_origin,
    origin_of_url,
    source_of,
)

NDJSON = "application/x-ndjson"
JSON = "application/json"


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


Viewer = Annotated[User, Depends(BasicAuth("viewer"))]
Auditor = Annotated[User, Depends(BasicAuth("auditor"))]
Admin = Annotated[User, Depends(BasicAuth("admin"))]


async def body_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedBody([FieldError("$", f"malformed JSON: {error}")]) from error


# -- state-changing calls: JSON only, never cross-site -------------------------------------------

STATE_CHANGING = frozenset({"POST", "PUT", "DELETE", "PATCH"})


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
