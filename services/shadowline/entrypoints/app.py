"""The HTTP app of an instance: the JSON API's and the HA screen's routers and the middleware,
assembled (paths fixed by DESIGN.md).

Every route lives in a router module and names what it needs as a typed dependency
(entrypoints.deps); errors become responses by the one mapping (entrypoints.errors).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from shadowline import __version__
from shadowline.application.auth import Authenticator
from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.application.service import ConfigService
from shadowline.domain.errors import FieldError, InvalidInput, ShadowlineError
from shadowline.entrypoints.deps import Monitoring, Scraped
from shadowline.entrypoints.errors import BodyTooLarge
from shadowline.entrypoints.http import alerts, config, probes
from shadowline.entrypoints.http.common import SameOriginJson
from shadowline.entrypoints.http.ha import router as ha_router
from shadowline.entrypoints.http.openapi import config_kind_paths, tidy
from shadowline.entrypoints.http.switch import router as switch_router
from shadowline.entrypoints.screen.routes import include_screen, is_screen_form
from shadowline.entrypoints.web import ORJSONResponse, error_response
from shadowline.settings import Settings


def _field(loc: tuple[object, ...]) -> str:
    # A header is named as HTTP spells it (If-Match), as the routes' own refusals name it.
    if len(loc) == 2 and loc[0] == "header":
        return "-".join(part.capitalize() for part in str(loc[1]).split("-"))
    if len(loc) == 3 and loc[0] == "query" and isinstance(loc[2], int):
        return f"query.{loc[1]}"  # one of a repeated parameter's values (?type=A&type=B)
    return ".".join(str(p) for p in loc)


async def _bad_request(_: Request, error: Exception) -> ORJSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        FieldError(_field(tuple(e.get("loc", ()))), e.get("msg", "invalid")) for e in error.errors()
    ]
    return error_response(InvalidInput(fields))


def _openapi(app: FastAPI, service: ConfigService) -> Callable[[], dict[str, Any]]:
    """app.openapi: FastAPI's document, with one PUT path per config kind (its JSON Schema as the
    body: entrypoints.http.openapi), built once."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            catalog = service.catalog
            config_kind_paths(doc, {kind: catalog.schema(kind) for kind in catalog.kinds})
            tidy(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    return document


async def _refused(_: Request, error: Exception) -> ORJSONResponse:
    return error_response(error)


async def _http_error(request: Request, error: Exception) -> ORJSONResponse:
    """Starlette's own refusals (no such path, a method the path has not) in the product's
    error shape; a 405's Allow lists every documented method of the path, not only those of
    the first route that matched it (PUT /config/{kind}/{name} and its GET and DELETE are
    routes of their own)."""
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        allowed = _methods_of(request.app, request.url.path)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    body = {"error": str(error.detail)}
    return ORJSONResponse(body, status_code=error.status_code, headers=headers)


def _methods_of(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods.update(m.upper() for m in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def create_app(
    *,
    service: ConfigService,
    ha: HaService,
    auth: Authenticator,
    metrics: Scraped,
    settings: Settings,
    failover: Failover | None = None,
    feed: Monitoring | None = None,
) -> FastAPI:
    app = FastAPI(
        title="shadowline",
        version=__version__,
        default_response_class=ORJSONResponse,
        description="Master/shadow high availability for configuration.",
    )
    # What the routes' dependencies (entrypoints.deps) hand them.
    app.state.auth, app.state.settings, app.state.metrics = auth, settings, metrics
    app.state.service, app.state.ha, app.state.failover = service, ha, failover
    app.state.feed = feed

    for error_class in (ShadowlineError, BodyTooLarge):
        app.add_exception_handler(error_class, _refused)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    app.include_router(probes.router)
    app.include_router(config.router)
    app.include_router(alerts.router)  # GET /alerts
    include_screen(app)  # the High Availability screen at GET / (entrypoints.screen)
    app.add_middleware(SameOriginJson, public_url=settings.public_url, exempt=is_screen_form)
    # Last: routes are matched in order, and the config writes should not first be tried
    # against every /ha route (no path here overlaps one there, so the order changes nothing else).
    app.include_router(ha_router)
    app.include_router(switch_router)  # POST, DELETE /ha/switch-roles
    app.openapi = _openapi(app, service)  # type: ignore[method-assign]
    return app
