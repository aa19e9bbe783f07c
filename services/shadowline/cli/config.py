"""`shadowline config ...`: publish changes and read the configuration, now or in the past."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    Json,
    Password,
    Prefer,
    Url,
    User,
    call,
    client,
    emit,
    examples,
    fail,
)

app = typer.Typer(
    help="Publish and read configuration items (--json: one JSON document).",
    no_args_is_help=True,
    epilog=examples(
        "shadowline config list",
        "shadowline config put resource orders - < orders.json",
        "shadowline config list --as-of 2026-11-24T10:02:00Z --json",
    ),
)

IfMatch = Annotated[
    int | None, typer.Option("--if-match", help="Only if the item is at this version.")
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why: recorded in the audit history.")]


@app.command(
    "put",
    epilog=examples(
        """shadowline config put subaccount acme '{"region": "eu10", "subaccount_id": "a1"}'""",
        "shadowline config put system-mapping erp - < erp.json    # the value from stdin",
        'shadowline config put resource ping \'{"system_mapping": "erp", "path": "/ping", '
        '"match": "exact"}\' --if-match 3 --reason \'ticket 4711\'',
    ),
)
def put(
    kind: str,
    name: str,
    value: Annotated[
        str, typer.Argument(help="The item's value as JSON; '-' reads standard input.")
    ],
    if_match: IfMatch = None,
    reason: Reason = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Create or replace an item; the value is checked against the kind's JSON Schema.

    --if-match makes it conditional (exit 1 on a version conflict).

    --reason is recorded in the audit history.
    """
    text = typer.get_text_stream("stdin").read() if value == "-" else value
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        fail(f"VALUE is not JSON: {error}")
    with client(url, user, password) as c:
        result = call(c.put, kind, name, doc, if_match=if_match, reason=reason)
    emit(
        result,
        as_json,
        f"{kind}/{name} is at version {result['version']} (position {result['position']})",
    )


@app.command(
    "get",
    epilog=examples(
        "shadowline config get subaccount acme",
        "shadowline config get subaccount acme --json | jq .value.region",
    ),
)
def get(
    kind: str,
    name: str,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    prefer: Prefer = "any",
    as_json: Json = False,
) -> None:
    """Print an item's value and version (exit 1 when it does not exist)."""
    with client(url, user, password, prefer) as c:
        result = call(c.get, kind, name)
    emit(
        result,
        as_json,
        f"# version {result['version']}\n"
        + orjson.dumps(result["value"], option=orjson.OPT_INDENT_2).decode(),
    )


@app.command(
    "delete",
    epilog=examples(
        "shadowline config delete resource orders",
        'shadowline config delete resource orders --if-match 2 --reason "retired"',
    ),
)
def delete(
    kind: str,
    name: str,
    if_match: IfMatch = None,
    reason: Reason = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Delete an item (exit 1 when it does not exist or --if-match does not hold)."""
    with client(url, user, password) as c:
        result = call(c.delete, kind, name, if_match=if_match, reason=reason)
    emit(result, as_json, f"{kind}/{name} deleted (position {result['position']})")


@app.command(
    "list",
    epilog=examples(
        "shadowline config list",
        "shadowline config list --at 120                  # right after position 120",
        "shadowline config list --as-of 2026-11-24T10:02:00Z --json",
    ),
)
def list_items(
    at: Annotated[int | None, typer.Option("--at", help="State right after this position.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="State as of an ISO-8601 time.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    prefer: Prefer = "any",
    as_json: Json = False,
) -> None:
    """List every item, now or at a point in history (replayed by the instance)."""
    with client(url, user, password, prefer) as c:
        result = call(c.state, at=at, as_of=as_of)
    lines = [f"# position {result['position']}, {len(result['items'])} items"]
    lines += [f"{key}  {orjson.dumps(value).decode()}" for key, value in result["items"].items()]
    emit(result, as_json, "\n".join(lines))


@app.command(
    "diff",
    epilog=examples(
        "shadowline config diff --from 10 --to 42",
        "shadowline config diff --from 2026-11-24T10:00:00Z --json",
    ),
)
def diff_cmd(
    start: Annotated[str, typer.Option("--from", help="A position or an ISO-8601 time.")],
    end: Annotated[
        str | None, typer.Option("--to", help="A position or time; default now.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    prefer: Prefer = "any",
    as_json: Json = False,
) -> None:
    """What changed between two points in history: items added, removed and changed."""
    with client(url, user, password, prefer) as c:
        result = call(c.diff, start, end)
    lines = [f"# from position {result['from']} to {result['to']}"]
    lines += [f"+ {k}  {orjson.dumps(v).decode()}" for k, v in result["added"].items()]
    lines += [f"- {k}  {orjson.dumps(v).decode()}" for k, v in result["removed"].items()]
    lines += [
        f"~ {k}  {orjson.dumps(v['from']).decode()} -> {orjson.dumps(v['to']).decode()}"
        for k, v in result["changed"].items()
    ]
    emit(result, as_json, "\n".join(lines))
