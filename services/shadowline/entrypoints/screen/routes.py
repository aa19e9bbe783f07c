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

import time
from collections.abc import Awaitable
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shadowline.application.auth import TooManyFailures
from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.domain.errors import Forbidden, ShadowlineError, Unauthorized
from shadowline.entrypoints.deps import HA, Alerts, FailoverDep, Feed, Log, Service
from shadowline.entrypoints.screen import panels
from shadowline.entrypoints.screen.history import router as history_router
from shadowline.entrypoints.screen.pages import page
from shadowline.entrypoints.screen.session import (
    LoginRequired,
    ScreenAdmin,
    ScreenRefused,
    ScreenSessions,
    ScreenViewer,
    Sessions,
    check_origin,
)
from shadowline.entrypoints.web import error_response, source_of

router = APIRouter(include_in_schema=False)
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


async def _role_log(request: Request) -> panels.RoleLog:
    found: panels.RoleLog = request.app.state.role_log
    return found


RoleLogDep = Annotated[panels.RoleLog, Depends(_role_log)]


@router.get("/", response_class=HTMLResponse)
async def screen(
    request: Request,
    user: ScreenViewer,
    known: ScreenSessions,
    ha: HA,
    service: Service,
    feed: Feed,
    alerts: Alerts,
    role_log: RoleLogDep,
    store: Log,
) -> Response:
    flash = known.read_flash(request)
    view = await panels.status_view(
        ha, service, feed, user, alerts, role_log, request.app.state.switched_at
    )
    quarantine = await panels.quarantined(store) if user.may("auditor") else None
    response = page(request, "screen.html", **view, flash=flash, quarantine=quarantine)
    known.clear_flash(request, response)  # shown once
    return response


@router.get("/ui/status", response_class=HTMLResponse)
async def status_fragment(
    request: Request,
    user: ScreenViewer,
    ha: HA,
    service: Service,
    feed: Feed,
    alerts: Alerts,
    role_log: RoleLogDep,
) -> Response:
    view = await panels.status_view(
        ha, service, feed, user, alerts, role_log, request.app.state.switched_at
    )
    return page(request, "_status.html", **view)


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
    request: Request, user: ScreenAdmin, _: ActionForm, known: ScreenSessions, failover: FailoverDep
) -> Response:
    request.app.state.switched_at = (
        time.monotonic()
    )  # the screen shows the handover until it settles
    return await _done(known, _switched(failover, user.user.name))


async def _maintained(ha: HaService, actor: str, on: bool) -> str:
    await ha.maintenance(on, actor)
    return f"Maintenance {'on: automatic failover paused' if on else 'off: automatic failover resumed'}."


async def _verified(ha: HaService) -> str:
    done = await ha.verify()
    return f"Verify: {done['sentence']}."


@router.post("/ui/maintenance")
async def maintenance(
    user: ScreenAdmin, form: ActionForm, known: ScreenSessions, ha: HA
) -> Response:
    return await _done(known, _maintained(ha, user.user.name, form.get("on") == "true"))


@router.post("/ui/verify")
async def verify(user: ScreenAdmin, _: ActionForm, known: ScreenSessions, ha: HA) -> Response:
    return await _done(known, _verified(ha))


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
    app.state.role_log = panels.RoleLog(app.state.service)
    app.state.switched_at = None  # when Switch Roles was last pressed here (monotonic)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(ScreenRefused, _refused)
    app.include_router(router)
    app.include_router(history_router)
