"""Rendering the HA screen's pages: Jinja2 templates shipped in the package, strict headers.

Templates are loaded from the package (`shadowline/entrypoints/screen/templates`), so they come with the
wheel and need no build step. Autoescaping is on for every template: names, values and error
texts come from users, peers and the broker.

Every page carries a Content-Security-Policy whose script and style nonce is new per response:
the only script that may run is the page's own inline one, so even a value that escaped
escaping could not run code; frame-ancestors 'none' stops click-jacking of the action buttons.
"""

from __future__ import annotations

import functools
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from shadowline import __version__
from shadowline.domain.events import parse_time


def iso(moment: datetime | float | str | None) -> str:
    """A moment as ISO-8601 UTC to the second ('2024-05-01T10:02:03Z'); '' for None."""
    if moment is None or moment == "":
        return ""
    try:
        if isinstance(moment, str):  # heartbeats carry their own ISO text
            moment = parse_time(moment)
        elif not isinstance(moment, datetime):
            moment = datetime.fromtimestamp(float(moment), UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(moment)  # a stranger's message on monitoring: shown as it came


def iso_micro(moment: datetime) -> str:
    """Full precision, as in the event envelopes: usable as an `as_of` point again."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_json(value: Any, indent: bool = False) -> str:
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, option=option, default=str).decode()


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("shadowline.entrypoints.screen", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(iso=iso, iso_micro=iso_micro, json=as_json, seconds=seconds)
    env.globals["version"] = __version__
    return env


def page(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    instance = request.app.state.settings.instance
    text = environment().get_template(template).render(nonce=nonce, instance=instance, **context)
    return HTMLResponse(text, status_code=code, headers=headers(nonce))


def headers(nonce: str) -> dict[str, str]:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
