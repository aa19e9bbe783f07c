"""The HTTP app of an instance: the JSON API's and the HA screen's routers and the middleware,
assembled (paths fixed by DESIGN.md).

Every route lives in a router module and names what it needs as a typed dependency
(entrypoints.deps); errors become responses by the one mapping (entrypoints.errors).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

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
from shadowline.entrypoints.screen.routes import include_screen, is_screen_form
from shadowline.entrypoints.web import ORJSONResponse, error_response
from shadowline.settings import Settings


async def _bad_request(_: Request, error: Exception) -> ORJSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        FieldError(".".join(str(p) for p in e.get("loc", ())), e.get("msg", "invalid"))
        for e in error.errors()
    ]
    return error_response(InvalidInput(fields))


async def _refused(_: Request, error: Exception) -> ORJSONResponse:
    return error_response(error)


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

    app.include_router(probes.router)
    app.include_router(config.router)
    app.include_router(alerts.router)  # GET /alerts
    include_screen(app)  # the High Availability screen at GET / (entrypoints.screen)
    app.add_middleware(SameOriginJson, public_url=settings.public_url, exempt=is_screen_form)
    # Last: routes are matched in order, and the config writes should not first be tried
    # against every /ha route (no path here overlaps one there, so the order changes nothing else).
    app.include_router(ha_router)
    return app
