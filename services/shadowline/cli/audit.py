"""`shadowline audit ...`: check an instance's log and what it serves from it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    Json,
    Password,
    Url,
    User,
    call,
    emit,
    examples,
)

app = typer.Typer(
    help="Audit: check an instance's log and its served state (--json: one document).",
    no_args_is_help=True,
    epilog=examples(
        "shadowline audit verify --url http://master:8080 --user ada",
        "shadowline audit verify --json | jq .sentence",
    ),
)

Timeout = Annotated[
    float, typer.Option(min=1, help="Seconds to wait for the answer (the whole log is read).")
]


def _describe(doc: dict[str, Any]) -> str:
    lines = [str(doc.get("sentence") or ("ok" if doc["ok"] else "the audit failed"))]
    if not doc["ok"]:
        for field in ("problem", "key", "position", "expected", "found"):
            if field in doc:
                lines.append(f"  {field}: {doc[field]}")
    return "\n".join(lines)


@app.command(
    "verify",
    epilog=examples(
        "shadowline audit verify --url http://master:8080 --user ada --password ...",
        "SHADOWLINE_URL=http://shadow:8080 shadowline audit verify --json",
        "shadowline audit verify || echo 'the log or the served state was tampered with'",
    ),
)
def verify(
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    timeout: Timeout = 600.0,
    as_json: Json = False,
) -> None:
    """Recompute the hash chain and the state from the whole log and compare them with what
    the instance serves (needs role auditor); exit 1 on any difference, naming the first."""
    from shadowline.client.http import Client

    with Client(url, user, password, timeout=timeout) as c:
        doc = call(c.audit_verify)
    emit(doc, as_json, _describe(doc))
    if not doc["ok"]:
        raise typer.Exit(EXIT_REFUSED)
