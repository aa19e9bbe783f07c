"""Every command of the console script explains itself: `--help` works and shows examples, and
client commands that print data can print JSON. The command tree is walked, so a command added
later is held to the same rule without touching this file."""

from __future__ import annotations

import csv
import inspect
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from shadowline.cli.common import EXIT_MEANINGS, ExitCode
from shadowline.cli.export import CSV_COLUMNS, CsvWriter, defuse
from shadowline.cli.main import app

# Typer ships its own copy of click: groups are recognised by their `commands`, not by class.
ROOT: Any = typer.main.get_command(app)


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if is_group(command):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


def options(path: tuple[str, ...]) -> set[str]:
    return {o for p in command_at(path).params for o in getattr(p, "opts", [])}


COMMANDS = list(walk(ROOT))
# Commands that talk to an instance over HTTP.
CLIENT_COMMANDS = [p for p in COMMANDS if not is_group(command_at(p)) and "--url" in options(p)]


def test_the_walk_finds_the_commands_the_design_fixes() -> None:
    found = {" ".join(path) for path in COMMANDS}
    assert {
        "migrate",
        "instance",
        "watchdog",
        "demo",
        "config put",
        "config get",
        "config list",
        "config delete",
        "history",
        "history export",
        "ha status",
        "ha enable",
        "ha join",
        "ha confirm",
        "ha switch-roles",
        "audit verify",
    } <= found


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "shadowline")
def test_every_command_has_help_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="shadowline")
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('shadowline', *path))}" in result.output
    assert "Examples" in result.output
    examples = result.output.split("Examples", 1)[1]
    assert "shadowline " in examples


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "shadowline")
def test_every_help_paragraph_after_the_first_is_one_line(path: tuple[str, ...]) -> None:
    """Rich joins the lines of a help's first paragraph but keeps those of the others: a later
    paragraph wrapped in the source ("A process\nthat dies") breaks mid-sentence on screen."""
    paragraphs = inspect.cleandoc(command_at(path).help or "").split("\n\n")[1:]
    assert [p for p in paragraphs if "\n" in p.strip()] == []


def test_the_demo_help_reads_in_whole_sentences_on_a_narrow_terminal() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    prose = " ".join(result.output.split("Options", 1)[0].split())
    assert "A process that dies is started again after 5 s" in prose
    assert "\n that dies" not in result.output and "\n old master" not in result.output


def test_client_commands_are_found_by_their_url_option() -> None:
    assert {("config", "put"), ("history", "export"), ("ha", "status")} <= set(CLIENT_COMMANDS)


@pytest.mark.parametrize("path", CLIENT_COMMANDS, ids=lambda p: " ".join(p))
def test_every_client_command_offers_json_and_the_connection_options(
    path: tuple[str, ...],
) -> None:
    assert {"--json", "--url", "--user", "--password"} <= options(path)


def test_the_root_help_prints_the_exit_code_table() -> None:
    result = CliRunner().invoke(app, ["--help"])
    table = result.output.split("Exit codes", 1)[1]
    for code in ExitCode:
        assert f" {int(code)}  {EXIT_MEANINGS[code][:30]}" in table


def test_the_documented_exit_codes_keep_their_numbers() -> None:
    assert (ExitCode.OK, ExitCode.REFUSED, ExitCode.USAGE, ExitCode.UNAVAILABLE) == (0, 1, 2, 3)
    assert set(EXIT_MEANINGS) == set(ExitCode)


def test_excel_safe_prefixes_cells_a_spreadsheet_would_run_and_nothing_else() -> None:
    for risky in ("=1+2", "+49 30", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert defuse(risky) == "'" + risky
    for harmless in ("admin", "1", '{"a":1}', "", "a=b", "'quoted"):
        assert defuse(harmless) == harmless


def _event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": "0b9e2a4e-1c1f-4a57-9d7b-8b1f7f0f0c11",
        "position": 7,
        "epoch": 2,
        "type": "ConfigPut",
        "kind": "subaccount",
        "name": "acme",
        "version": 3,
        "data": {"region": "eu10", "display_name": 'ACME, "Europe"\nä'},
        "metadata": {"actor": "alice", "request_id": "r-1", "reason": "=HYPERLINK(1)"},
        "recorded_at": "2026-11-24T10:02:03.000001Z",
        "chain": "ab" * 32,
    }
    return {**event, **changes}


def _csv(*events: dict[str, object], excel_safe: bool = False) -> list[dict[str, str]]:
    out = io.BytesIO()
    writer = CsvWriter(out, excel_safe=excel_safe)
    for event in events:
        writer.write(event)
    writer.finish()
    raw = out.getvalue()
    assert raw.endswith(b"\r\n")  # RFC 4180 line ends
    return list(csv.DictReader(io.StringIO(raw.decode(), newline="")))


def test_csv_rows_carry_every_field_and_read_back_unchanged() -> None:
    deleted = _event(position=8, type="ConfigDeleted", version=4, data=None)
    ha_event = _event(
        position=9,
        type="Promoted",
        kind=None,
        name=None,
        version=None,
        data={"from_epoch": 1},
        metadata={"actor": "watchdog:w1", "request_id": "c-1", "watchdog": "w1"},
    )
    rows = _csv(_event(), deleted, ha_event)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["position"] for r in rows] == ["7", "8", "9"]
    assert orjson.loads(rows[0]["data"]) == _event()["data"]
    assert rows[0]["reason"] == "=HYPERLINK(1)"
    assert orjson.loads(rows[1]["data"]) is None
    assert (rows[2]["kind"], rows[2]["name"], rows[2]["version"], rows[2]["reason"]) == (
        "",
        "",
        "",
        "",
    )
    assert orjson.loads(rows[2]["metadata"])["watchdog"] == "w1"


def test_csv_with_excel_safe_defuses_formulas_only_when_asked() -> None:
    assert _csv(_event(), excel_safe=True)[0]["reason"] == "'=HYPERLINK(1)"
    assert _csv(_event(), excel_safe=False)[0]["reason"] == "=HYPERLINK(1)"


def test_broker_setup_never_generates_a_password_rabbitmqctl_reads_as_an_option() -> None:
    from shadowline.cli.broker import new_password

    passwords = {new_password() for _ in range(2000)}
    assert len(passwords) == 2000
    assert not any(p.startswith("-") for p in passwords)
