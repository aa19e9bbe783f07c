"""`shadowline config ...` and `shadowline history`: publish changes, read state and history."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
import typer

from shadowline.cli.common import DEFAULT_URL, Json, Password, Url, User, call, client, emit, fail

app = typer.Typer(help="Publish and read configuration items.", no_args_is_help=True)

IfMatch = Annotated[
    int | None, typer.Option("--if-match", help="Only if the item is at this version.")
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why: recorded in the audit history.")]


@app.command("put")
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
    """Create or replace an item.

    Example: shadowline config put subaccount acme '{"region": "eu10", "subaccount_id": "a1"}'
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


@app.command("get")
def get(
    kind: str,
    name: str,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Print an item's value and version. Example: shadowline config get subaccount acme"""
    with client(url, user, password) as c:
        result = call(c.get, kind, name)
    emit(
        result,
        as_json,
        f"# version {result['version']}\n"
        + orjson.dumps(result["value"], option=orjson.OPT_INDENT_2).decode(),
    )


@app.command("delete")
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
    """Delete an item. Example: shadowline config delete resource orders --if-match 2"""
    with client(url, user, password) as c:
        result = call(c.delete, kind, name, if_match=if_match, reason=reason)
    emit(result, as_json, f"{kind}/{name} deleted (position {result['position']})")


@app.command("list")
def list_items(
    at: Annotated[int | None, typer.Option("--at", help="State right after this position.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="State as of an ISO-8601 time.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """List every item, now or at a point in history.

    Examples: shadowline config list --at 120; shadowline config list --as-of 2026-11-24T10:02:00Z
    """
    with client(url, user, password) as c:
        result = call(c.state, at=at, as_of=as_of)
    lines = [f"# position {result['position']}, {len(result['items'])} items"]
    lines += [f"{key}  {orjson.dumps(value).decode()}" for key, value in result["items"].items()]
    emit(result, as_json, "\n".join(lines))


@app.command("diff")
def diff_cmd(
    start: Annotated[str, typer.Option("--from", help="A position or an ISO-8601 time.")],
    end: Annotated[
        str | None, typer.Option("--to", help="A position or time; default now.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """What changed between two points. Example: shadowline config diff --from 10 --to 42"""
    with client(url, user, password) as c:
        result = call(c.diff, start, end)
    lines = [f"# from position {result['from']} to {result['to']}"]
    lines += [f"+ {k}  {orjson.dumps(v).decode()}" for k, v in result["added"].items()]
    lines += [f"- {k}  {orjson.dumps(v).decode()}" for k, v in result["removed"].items()]
    lines += [
        f"~ {k}  {orjson.dumps(v['from']).decode()} -> {orjson.dumps(v['to']).decode()}"
        for k, v in result["changed"].items()
    ]
    emit(result, as_json, "\n".join(lines))


def _history_line(event: dict[str, Any]) -> str:
    meta = event.get("metadata") or {}
    what = f"{event['kind']}/{event['name']} v{event['version']}" if event.get("kind") else ""
    reason = f"  ({meta['reason']})" if meta.get("reason") else ""
    return (
        f"{event['position']:>8}  {event['recorded_at']}  e{event['epoch']}  "
        f"{meta.get('actor', '-'):<12} {event['type']:<14} {what}{reason}"
    )


def history(
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    name: Annotated[str | None, typer.Option(help="Only this item name.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only changes by this user.")] = None,
    since: Annotated[str | None, typer.Option(help="From this ISO-8601 time.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this ISO-8601 time.")] = None,
    after: Annotated[int, typer.Option(help="Only events after this position.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 1000,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Who changed what, when: the audit history.

    Examples: shadowline history --kind resource --actor alice; shadowline history --follow
    """
    filters = {"kind": kind, "name": name, "actor": actor, "since": since, "until": until}
    with client(url, user, password) as c:
        while True:
            # With --follow the instance holds the request open until something new is logged.
            page = call(
                lambda start=after: list(
                    c.events(start, limit, wait=25 if follow else 0, **filters)
                )
            )
            for event in page:
                after = event["position"]
                typer.echo(orjson.dumps(event).decode() if as_json else _history_line(event))
            if not follow:
                return
            if not page:
                time.sleep(0.2)
