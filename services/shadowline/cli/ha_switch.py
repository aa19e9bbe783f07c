"""`shadowline ha switch-roles`: the planned, lossless handover, now (as always), scheduled for
a time (`--at`, POST /ha/switch-roles with `{"at": ...}`) or a scheduled one cancelled
(`--cancel`, DELETE /ha/switch-roles)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    Json,
    Password,
    Url,
    User,
    call,
    client,
    emit,
    examples,
    fail,
)
from shadowline.domain.events import format_time
from shadowline.domain.switch import parse_when

EPILOG = examples(
    "shadowline ha switch-roles --url http://master:8080",
    "shadowline ha switch-roles --url http://master:8080 --json | jq .seconds",
    "shadowline ha switch-roles --at +10m --url http://master:8080",
    "shadowline ha switch-roles --at 2026-12-24T02:00:00+01:00 --url http://master:8080",
    "shadowline ha switch-roles --cancel --url http://master:8080",
)
At = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Schedule the switch instead: +30s, +10m, +2h, +1d, or ISO-8601 (local time when "
        "it names no offset); at most 7 days ahead. Shown in `ha status` until it has run.",
    ),
]
Cancel = Annotated[
    bool, typer.Option("--cancel", help="Cancel the scheduled switch (not started yet).")
]


def switch_roles(
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
    at: At = None,
    cancel: Cancel = False,
) -> None:
    """Planned, lossless handover: the shadow becomes master, this master its shadow."""
    if at is not None and cancel:
        fail("--at and --cancel exclude each other")
    when = None
    if at is not None:
        try:
            when = format_time(parse_when(at, datetime.now(UTC)))
        except ValueError as error:
            fail(str(error))
    with client(url, user, password) as c:
        if cancel:
            doc = call(c.ha_cancel_switch)
            emit(doc, as_json, f"the switch of roles scheduled for {doc['at']} is cancelled")
            return
        doc = call(c.ha_switch_roles, when) if when else call(c.ha_switch_roles)
    if when:
        emit(doc, as_json, f"switch of roles scheduled for {doc['at']} by {doc['requested_by']}")
        return
    emit(
        doc,
        as_json,
        f"{doc['new_master']} is master in epoch {doc['epoch']} (handover took "
        f"{doc['seconds'] * 1000:.0f} ms); this instance is its shadow",
    )
