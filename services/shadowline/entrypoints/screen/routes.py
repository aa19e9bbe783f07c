"""The High Availability screen at `GET /`: status that updates itself, login, and the actions.

Server-rendered HTML (templates/), no build step. The page works without JavaScript (it shows
the status as of its load); with it, a small inline script fetches `/ui/status` every second
and swaps in the parts that changed. The actions are plain forms that post to `/ui/...`, call
the same HaService / Failover methods as the JSON API, and redirect (303) back to `/` with a
flash message: success, or the refusal's text (a 409 of the API).

Viewing needs at least `viewer`, the actions `admin`, the audit pages (screen.history)
`auditor`. A request may log in with a session cookie (`/login`) or HTTP Basic (`curl -u`).
Every form carries a CSRF token bound to the session (or, with Basic, to the user), and a form
from another origin is refused: both with 403.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shadowline.application.auth import TooManyFailures
from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.application.service import ConfigService
from shadowline.domain.errors import Forbidden, ShadowlineError, Unauthorized, Unavailable
from shadowline.entrypoints.deps import HA, FailoverDep, Feed, Monitoring, Service
from shadowline.entrypoints.screen.history import router as history_router
from shadowline.entrypoints.screen.pages import page
from shadowline.entrypoints.screen.session import (
    LoginRequired,
    ScreenAdmin,
    ScreenRefused,
    ScreenSessions,
    ScreenUser,
    ScreenViewer,
    Sessions,
    check_origin,
)
from shadowline.entrypoints.web import error_response, source_of

router = APIRouter(include_in_schema=False)
RECENT_HEARTBEATS = 10
FORM = "application/x-www-form-urlencoded"


def is_screen_form(path: str) -> bool:
    """The screen's form posts: urlencoded, with their own CSRF tokens and origin checks
    (screen.session), so the API's JSON-only rule (http.common.SameOriginJson) is not theirs."""
    return path in ("/login", "/logout") or path.startswith("/ui/")


async def form_of(request: Request) -> dict[str, str]:
    """A urlencoded form (parsed here: python-multipart is not a dependency, and the screen's
    forms carry a few short fields only). Any other body counts as empty, so lacks a token."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=20))
    except ValueError:  # more fields than any screen form has
        return {}


async def _action_form(
    request: Request, user: ScreenAdmin, known: ScreenSessions
) -> dict[str, str]:
    """The form of an admin action, from this origin and with the user's CSRF token."""
    form = await form_of(request)
    known.check_form(request, user, form)
    return form


ActionForm = Annotated[dict[str, str], Depends(_action_form)]


# -- the status ----------------------------------------------------------------------------------


async def status_view(
    ha: HaService, service: ConfigService, feed: Monitoring | None, user: ScreenUser
) -> dict[str, Any]:
    status = await ha.status()
    shadow = status.get("shadow")
    now = datetime.now(UTC)
    if shadow is not None:
        shadow["lag_seconds"] = await _lag_seconds(service, shadow, now)
    return {
        "status": status,
        "user": user,
        "can_act": user.may("admin"),
        "pending": shadow is not None and shadow["state"] == "pending",
        "feed": feed,
        "latest": feed.latest_heartbeats() if feed else [],
        "heartbeats": feed.recent_heartbeats(RECENT_HEARTBEATS) if feed else [],
        "events": feed.recent_events() if feed else [],
        "now": now,
    }


async def _lag_seconds(
    service: ConfigService, shadow: dict[str, Any], now: datetime
) -> float | None:
    """How old the oldest event is that the shadow has not applied (0 when it has them all):
    the master's status counts the lag in events only, an operator also wants it in time."""
    if shadow["state"] == "pending":
        return None
    if not shadow["lag_events"]:
        return 0.0
    try:
        oldest = await service.store.read(shadow["position"], 1)
    except Unavailable:  # the status is worth showing without it when the database is away
        return None
    return max(0.0, (now - oldest[0].recorded_at).total_seconds()) if oldest else None


@router.get("/", response_class=HTMLResponse)
async def screen(
    request: Request,
    user: ScreenViewer,
    known: ScreenSessions,
    ha: HA,
    service: Service,
    feed: Feed,
) -> Response:
    flash = known.read_flash(request)
    view = await status_view(ha, service, feed, user)
    response = page(request, "screen.html", **view, flash=flash)
    known.clear_flash(request, response)  # shown once
    return response


@router.get("/ui/status", response_class=HTMLResponse)
async def status_fragment(
    request: Request, user: ScreenViewer, ha: HA, service: Service, feed: Feed
) -> Response:
    return page(request, "_status.html", **await status_view(ha, service, feed, user))


# -- logging in and out --------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return page(request, "login.html", error=None, name="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, known: ScreenSessions) -> Response:
    check_origin(request, known.origins(request))  # no session yet: a login CSRF is by origin
    form = await form_of(request)
    name = form.get("user", "")
    try:
        user = await known.login(name, form.get("password", ""), source_of(request))
    except TooManyFailures as error:
        refused = page(request, "login.html", 429, error=f"{str(error).capitalize()}.", name=name)
        refused.headers["Retry-After"] = str(error.retry_after)
        return refused
    except Unauthorized:
        return page(request, "login.html", 401, error="Unknown user or wrong password.", name=name)
    except Forbidden as error:
        return page(request, "login.html", 403, error=str(error), name=name)
    response = RedirectResponse("/", status_code=303)
    known.start(response, user, secure=known.secure(request))
    return response


@router.post("/logout")
async def logout(request: Request, user: ScreenViewer, known: ScreenSessions) -> Response:
    known.check_form(request, user, await form_of(request))
    response = RedirectResponse("/login", status_code=303)
    known.end(request, response)
    return response


# -- the actions: the same HaService / Failover calls as the JSON API, back to `/` ---------------


async def _done(known: Sessions, work: Awaitable[str]) -> Response:
    """Back to `/` with what came of an action: a refusal (409 in the API) is shown, not thrown."""
    response = RedirectResponse("/", status_code=303)
    try:
        known.flash(response, True, await work)
    except ShadowlineError as error:
        known.flash(response, False, str(error))
    return response


async def _confirmed(ha: HaService, actor: str, shadow: str | None) -> str:
    done = await ha.confirm(shadow, actor)
    instance = (done.get("shadow") or {}).get("instance", "")
    return f"Shadow {instance} confirmed: it is receiving the configuration."


async def _switched(failover: Failover, actor: str) -> str:
    done = await failover.switch_roles(actor)
    return (
        f"Roles switched: {done['new_master']} is master in epoch {done['epoch']}, "
        f"this instance its shadow."
    )


async def _removed(ha: HaService, actor: str) -> str:
    done = await ha.forget(actor)
    return f"Shadow {done['removed']} removed: a new shadow may join."


@router.post("/ui/confirm")
async def confirm(user: ScreenAdmin, form: ActionForm, known: ScreenSessions, ha: HA) -> Response:
    return await _done(known, _confirmed(ha, user.user.name, form.get("shadow") or None))


@router.post("/ui/switch-roles")
async def switch_roles(
    user: ScreenAdmin, _: ActionForm, known: ScreenSessions, failover: FailoverDep
) -> Response:
    return await _done(known, _switched(failover, user.user.name))


@router.post("/ui/remove-shadow")
async def remove_shadow(
    user: ScreenAdmin, _: ActionForm, known: ScreenSessions, ha: HA
) -> Response:
    return await _done(known, _removed(ha, user.user.name))


# -- wiring --------------------------------------------------------------------------------------


def _login_required(request: Request, error: Exception) -> Response:
    """A browser (it asks for HTML) goes to the login form; a script gets the API's 401 with
    its Basic challenge, so `curl` sees what to do."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/login", status_code=303)
    return error_response(error)


def _refused(request: Request, error: Exception) -> Response:
    return page(request, "refused.html", 403, message=str(error))


def include_screen(app: FastAPI) -> None:
    settings = app.state.settings
    app.state.screen = Sessions(app.state.auth, settings.instance, settings.public_url)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(ScreenRefused, _refused)
    app.include_router(router)
    app.include_router(history_router)
