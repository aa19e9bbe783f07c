"""`shadowline ha preflight`: would a failover succeed now (GET /ha/preflight)? One line per
check, then the verdict; exit code 0 only when every check is ok, 1 when one is not, 3 when no
instance answers."""

from __future__ import annotations

from typing import Any

import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    EXIT_USAGE,
    Json,
    Password,
    Url,
    User,
    call,
    emit,
    examples,
    fail,
    with_scheme,
)

# With several URLs: how long to look for the master before asking the first that answers (a
# preflight is most wanted when something is wrong, the master perhaps gone).
PATIENCE = 2.0

EPILOG = examples(
    "shadowline ha preflight --url http://master:8080",
    "shadowline ha preflight --url http://master:8080,http://shadow:8080 --json",
    "shadowline ha preflight --url http://master:8080 || echo 'a failover would not succeed'",
)


def describe(doc: dict[str, Any]) -> str:
    """✓ or ✗, the check's name and its reason, a line each; then the verdict."""
    width = max((len(c["name"]) for c in doc["checks"]), default=0)
    lines = [
        f"{'✓' if c['ok'] else '✗'} {c['name']:<{width}}  {c['detail']}" for c in doc["checks"]
    ]
    failed = [c["name"] for c in doc["checks"] if not c["ok"]]
    if doc["ok"]:
        lines.append("OK: a failover would succeed now")
    else:
        lines.append(
            f"FAIL: {len(failed)} of {len(doc['checks'])} checks failed ({', '.join(failed)}): "
            "a failover would not succeed now"
        )
    return "\n".join(lines)


def preflight(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Would a failover succeed now? Shadow in sync, a watchdog live, the timing rule, clocks,
    versions, the broker nodes and timed probes of the peer, each a verdict and a reason.

    Asked of the master (with several URLs: whichever is master); a shadow answers its side.

    Exit code 0 only when every check is ok, 1 when one is not.
    """
    from shadowline.client.http import Client

    try:
        client = Client(with_scheme(url), user, password, patience=PATIENCE, prefer="master")
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
    with client:
        doc = call(client.ha_preflight)
    emit(doc, as_json, describe(doc))
    if not doc["ok"]:
        raise typer.Exit(EXIT_REFUSED)
