"""The audit history as a file: pages from GET /events written as NDJSON or CSV.

One page at a time is read and written, so an export of any length needs the memory of one
page. NDJSON lines are the API's envelopes exactly (the instance serializes with orjson too,
so parsing and dumping again gives the same bytes). CSV is flat, for spreadsheets and SQL
`COPY`: RFC 4180 quoting and CRLF line ends from the csv module, nested values as compact JSON.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import orjson

if TYPE_CHECKING:  # httpx is imported by the command that makes the client
    from shadowline.client.http import Client

CSV_COLUMNS = (
    "position",
    "recorded_at",
    "epoch",
    "type",
    "kind",
    "name",
    "version",
    "actor",
    "request_id",
    "reason",
    "data",
    "id",
    "chain",
    "metadata",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Query:
    """Which events: positions after `after` up to `to` (inclusive), and the API's filters
    (kind, name, actor, since, until, type; the instance applies them)."""

    after: int
    to: int
    page_size: int
    filters: dict[str, Any] = field(default_factory=dict)


class Writer(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


class NdjsonWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, event: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(event) + b"\n")

    def finish(self) -> None:
        self._out.flush()


def defuse(cell: str) -> str:
    """Make a cell inert in Excel, LibreOffice and Google Sheets: a leading quote shows the text
    as typed instead of evaluating it. It changes the data, hence only with --excel-safe."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def csv_row(event: dict[str, Any]) -> list[str]:
    meta = event.get("metadata") or {}
    cells = (
        event["position"],
        event["recorded_at"],
        event["epoch"],
        event["type"],
        event.get("kind"),
        event.get("name"),
        event.get("version"),
        meta.get("actor"),
        meta.get("request_id"),
        meta.get("reason"),
        _json(event.get("data")),
        event["id"],
        event["chain"],
        _json(meta),
    )
    return ["" if cell is None else str(cell) for cell in cells]


class CsvWriter:
    def __init__(self, out: BinaryIO, *, excel_safe: bool = False) -> None:
        import csv  # here: `--help` and `history` import this module, few of them write CSV

        # newline="": the csv module writes its own CRLF line ends, as RFC 4180 asks.
        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        self._csv = csv.writer(self._text)
        self._excel_safe = excel_safe
        self._csv.writerow(CSV_COLUMNS)

    def write(self, event: dict[str, Any]) -> None:
        row = csv_row(event)
        self._csv.writerow([defuse(c) for c in row] if self._excel_safe else row)

    def finish(self) -> None:
        self._text.flush()
        self._text.detach()  # the caller owns (and closes) the binary stream


def events(client: Client, query: Query) -> Iterator[dict[str, Any]]:
    """Every event the query selects, in position order, fetched one page at a time."""
    cursor = query.after
    filtered = any(value is not None for value in query.filters.values())
    while cursor < query.to:
        # Unfiltered, a page never asks for more than `to` needs; filtered, positions jump.
        limit = query.page_size if filtered else min(query.page_size, query.to - cursor)
        count = 0
        page = client.events(cursor, limit, **query.filters)
        try:
            for event in page:
                count += 1
                cursor = event["position"]
                if cursor > query.to:
                    return
                yield event
        finally:
            _close(page)  # ends the HTTP stream now when a page is left early
        if count < limit:  # a short page: nothing more matches yet
            return


def _close(page: Iterator[dict[str, Any]]) -> None:
    close = getattr(page, "close", None)
    if close is not None:
        close()


@dataclass
class Summary:
    events: int = 0
    last_position: int | None = None
    through: int = 0


def export(
    client: Client, query: Query, writer: Writer, progress: Callable[[int], None]
) -> Summary:
    """Write what the query selects; `progress` hears the position reached, now and then."""
    summary = Summary(through=query.after)
    for seen, event in enumerate(events(client, query), 1):
        writer.write(event)
        summary.events += 1
        summary.last_position = event["position"]
        if seen % 500 == 0:  # a bar redrawn per event would cost more than the export
            progress(event["position"])
    writer.finish()
    summary.through = query.to
    progress(query.to)
    return summary
