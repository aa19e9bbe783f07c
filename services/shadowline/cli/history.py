"""`shadowline history` (read the audit history) and `shadowline history export` (to a file)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer

from shadowline.cli import progress
from shadowline.cli.common import (
    DEFAULT_URL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Password,
    Prefer,
    Url,
    User,
    call,
    client,
    emit,
    examples,
    fail,
    reported,
)
from shadowline.cli.export import CsvWriter, NdjsonWriter, Query, Summary, Writer, export

Kind = Annotated[str | None, typer.Option(help="Only this kind.")]
Name = Annotated[str | None, typer.Option(help="Only this item name.")]
Actor = Annotated[str | None, typer.Option(help="Only changes by this user.")]
Since = Annotated[str | None, typer.Option(help="From this ISO-8601 time.")]
Until = Annotated[str | None, typer.Option(help="Up to this ISO-8601 time.")]
After = Annotated[int, typer.Option(min=0, help="Only events after this position.")]
Types = Annotated[
    list[str] | None,
    typer.Option("--type", help="Only events of this type, e.g. MasterPromoted (repeatable)."),
]

app = typer.Typer(
    invoke_without_command=True,
    epilog=examples(
        "shadowline history --kind resource --actor alice",
        "shadowline history --since 2026-11-24T10:00:00Z --until 2026-11-24T10:05:00Z",
        "shadowline history --follow --json | jq .type     # NDJSON, one event a line",
        "shadowline history export --format csv --output audit.csv",
    ),
)


ACTOR_WIDTH, TYPE_WIDTH = 12, 15  # "ShadowConfirmed", the longest event type, fits


def _cell(text: str, width: int) -> str:
    """Text in a column of `width`: padded, or cut with an ellipsis so the next column stays."""
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "\u2026"


def _ha_detail(event: dict[str, Any]) -> str:
    """What an HA event did, in a few words (its data, which config events do not need)."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    match event["type"]:
        case "HaEnabled":
            return f"HA enabled on {data.get('master', '?')}"
        case "ShadowConfirmed":
            return f"shadow {data.get('shadow', '?')} confirmed"
        case "ShadowRemoved":
            return f"shadow {data.get('shadow', '?')} removed"
        case "MasterPromoted":  # older events do not name the new master
            master = f"{data['master']} became master" if data.get("master") else "new master"
            previous = data.get("previous_master") or "?"
            said = f"{master} in epoch {data.get('epoch', '?')}, taking over from {previous}"
            said += f" at position {data.get('fork_position', '?')}"
            return said + (f": {data['reason']}" if data.get("reason") else "")
    plain = [f"{k}={v}" for k, v in data.items() if isinstance(v, str | int | float | bool)]
    return ", ".join(plain)


def _history_line(event: dict[str, Any]) -> str:
    meta = event.get("metadata") or {}
    if event.get("kind"):
        what = f"{event['kind']}/{event['name']} v{event['version']}"
    else:
        what = _ha_detail(event)
    reason = f"  ({meta['reason']})" if meta.get("reason") else ""
    actor = _cell(str(meta.get("actor", "-")), ACTOR_WIDTH)
    return (
        f"{event['position']:>8}  {event['recorded_at']}  e{event['epoch']}  "
        f"{actor} {_cell(event['type'], TYPE_WIDTH)} {what}{reason}"
    )


# Long only because typer reads the options from the signature, one a line.
@app.callback()
def history(
    ctx: typer.Context,
    kind: Kind = None,
    name: Name = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    event_type: Types = None,
    after: After = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 1000,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C ends).")
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    prefer: Prefer = "any",
    as_json: Annotated[
        bool, typer.Option("--json", help="One event envelope a line (NDJSON), as the API.")
    ] = False,
) -> None:
    """Who changed what, when: the audit history. `history export` writes all of it to a file."""
    if ctx.invoked_subcommand is not None:
        return
    filters: dict[str, Any] = {"kind": kind, "name": name, "actor": actor, "since": since}
    filters |= {"until": until, "type": event_type or None}
    with client(url, user, password, prefer) as c:
        try:
            while True:
                # The head before the request: a page of matches read after it has seen every
                # event up to it, so a filtered --follow moves past what did not match instead
                # of asking about it again and again.
                head = call(c.health)["position"] if follow else 0
                # With --follow the instance holds the request open until something is logged.
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
                if len(page) < limit:  # every match up to the head has been printed
                    after = max(after, head)
                if not page:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return  # the way to end --follow, like `shadowline watch`


class Format(StrEnum):
    ndjson = "ndjson"
    csv = "csv"


@contextmanager
def _target(output: str) -> Iterator[BinaryIO]:
    """Standard output, or FILE written as FILE.partial and renamed once complete: a failed or
    interrupted export never leaves a file that looks whole."""
    if output == "-":
        yield typer.get_binary_stream("stdout")
        return
    partial = Path(f"{output}.partial")
    try:
        out = partial.open("wb")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror}", EXIT_USAGE)
    try:
        with out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


def _reader_gone() -> None:
    """The reader of a pipe closed it (`| head`): stop quietly, without Python's complaint
    when it flushes standard output at exit."""
    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(EXIT_INTERRUPTED)


def _describe(summary: Summary, fmt: Format, output: str) -> str:
    where = "standard output" if output == "-" else output
    last = f", last position {summary.last_position}" if summary.last_position else ""
    return (
        f"exported {summary.events} events as {fmt.value} to {where}{last} "
        f"(history read through position {summary.through})"
    )


EXPORT_EXAMPLES = examples(
    "shadowline history export --output audit.ndjson",
    "shadowline history export --format csv --output audit.csv --excel-safe",
    "shadowline history export --kind resource --actor alice --since 2026-11-01T00:00Z",
    "shadowline history export --after 12000 --to 15000 --type ConfigPut | gzip >x.gz",
    "shadowline history export --output audit.ndjson --json | jq .events",
)


# Long on purpose: one typer option per line (each is the --help of the command), and
# the export loop itself is a few lines at the end.
@app.command("export", epilog=EXPORT_EXAMPLES)
def export_cmd(
    fmt: Annotated[Format, typer.Option("--format", help="ndjson or csv.")] = Format.ndjson,
    output: Annotated[
        str, typer.Option("--output", "-o", help="A file, or - for standard output.")
    ] = "-",
    kind: Kind = None,
    name: Name = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    event_type: Types = None,
    after: After = 0,
    to: Annotated[
        int | None,
        typer.Option(min=0, help="Up to this position (default: the head when export starts)."),
    ] = None,
    page_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Events per request to the instance.")
    ] = 5000,
    excel_safe: Annotated[
        bool,
        typer.Option(
            "--excel-safe",
            help="CSV: prefix cells starting with = + - @ with ' so spreadsheets do not run them.",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    prefer: Prefer = "any",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (needs --output FILE).")
    ] = False,
) -> None:
    """Write the audit history (or the part the filters select) as NDJSON or CSV, page by page,
    up to the head position at the start (or --to).

    NDJSON: one event envelope a line, exactly as GET /events sends it.

    CSV: a header row, then one row per event; data and metadata as compact JSON.

    A progress bar shows on stderr when it is a terminal; a summary line follows.
    """
    if as_json and output == "-":
        fail("--json prints the summary on standard output: give --output FILE", EXIT_USAGE)
    filters: dict[str, Any] = {"kind": kind, "name": name, "actor": actor, "since": since}
    filters |= {"until": until, "type": event_type or None}
    with client(url, user, password, prefer) as c:
        end = to if to is not None else call(c.health)["position"]
        query = Query(after, end, page_size, filters)
        shown = progress.wanted(quiet=quiet, as_json=as_json)
        try:
            with (
                reported(),
                _target(output) as out,
                progress.bar(f"export {fmt.value}", max(0, end - after), enabled=shown) as bar,
            ):
                writer: Writer = (
                    CsvWriter(out, excel_safe=excel_safe)
                    if fmt is Format.csv
                    else NdjsonWriter(out)
                )
                summary = export(c, query, writer, lambda p: bar.update(completed=p - after))
        except KeyboardInterrupt:
            fail("interrupted: the export is incomplete", EXIT_INTERRUPTED)
        except BrokenPipeError:
            _reader_gone()
    doc = {**vars(summary), "format": fmt.value, "output": output}
    if as_json:
        emit(doc, True)
    elif not quiet:
        typer.echo(_describe(summary, fmt, output), err=True)
