"""What the console script prints for people: flags without a type placeholder, URLs without a
scheme, and `history` rows whose columns stay in line and whose HA events say what happened."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from shadowline.cli.common import with_scheme
from shadowline.cli.history import _history_line
from shadowline.cli.main import app
from tests.unit.test_cli_help import ROOT, walk


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], prog_name="shadowline", env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_no_flag_of_any_command_shows_a_bool_placeholder() -> None:
    for path in walk(ROOT):
        assert "<bool>" not in help_of(path), path


def test_version_is_explained_and_prints_the_version() -> None:
    assert "Print the version and exit." in help_of(())
    result = CliRunner().invoke(app, ["--version"], prog_name="shadowline")
    assert result.exit_code == 0 and result.output.startswith("shadowline "), result.output


def test_a_url_without_a_scheme_is_read_as_http() -> None:
    assert with_scheme("localhost:8081") == "http://localhost:8081"
    assert with_scheme("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert with_scheme("https://node-a:8443") == "https://node-a:8443"
    assert (
        with_scheme("node-a:8080, https://node-b:8443") == "http://node-a:8080,https://node-b:8443"
    )


def event(type_: str, data: Any, actor: str = "admin", **fields: Any) -> dict[str, Any]:
    return {
        "position": 7,
        "recorded_at": "2026-12-02T19:00:00.000000Z",
        "epoch": 2,
        "type": type_,
        "kind": None,
        "name": None,
        "version": None,
        "data": data,
        "metadata": {"actor": actor},
        **fields,
    }


def test_history_rows_of_ha_events_say_what_happened() -> None:
    promoted = {
        "master": "node-b",
        "epoch": 2,
        "fork_position": 41,
        "previous_master": "node-a",
        "reason": "master heartbeats missing for 5.0 s",
    }
    rows = {
        "HaEnabled": (event("HaEnabled", {"master": "node-a"}), "HA enabled on node-a"),
        "ShadowConfirmed": (
            event("ShadowConfirmed", {"shadow": "node-b"}),
            "shadow node-b confirmed",
        ),
        "ShadowRemoved": (event("ShadowRemoved", {"shadow": "node-b"}), "shadow node-b removed"),
        "MasterPromoted": (
            event("MasterPromoted", promoted, actor="watchdog-1"),
            "node-b became master in epoch 2, taking over from node-a at position 41: "
            "master heartbeats missing for 5.0 s",
        ),
        "SigningStarted": (event("SigningStarted", {"key_id": "k1"}), "key_id=k1"),
    }
    for name, (row, detail) in rows.items():
        assert _history_line(row).endswith(detail), (name, _history_line(row))
    older = {k: v for k, v in promoted.items() if k != "master"}  # recorded without the name
    assert _history_line(event("MasterPromoted", older)).endswith(
        "new master in epoch 2, taking over from node-a at position 41: "
        "master heartbeats missing for 5.0 s"
    )


def test_long_actors_and_types_do_not_push_the_columns_out_of_line() -> None:
    config = event(
        "ConfigPut",
        {},
        actor="a-very-long-user-name-indeed",
        kind="subaccount",
        name="acme",
        version=3,
    )
    lines = [
        _history_line(config),
        _history_line(event("ShadowConfirmed", {"shadow": "node-b"})),
        _history_line(event("AVeryLongEventTypeFromTheFuture", {})),
    ]

    types = ["ConfigPut", "ShadowConfirmed", "AVeryLongEvent"]
    type_at = {line.index(t) for line, t in zip(lines, types, strict=True)}
    assert len(type_at) == 1, lines  # the type column starts at one place on every line
    detail_at = type_at.pop() + 16  # after the type column (15) and its space
    assert lines[0][detail_at:] == "subaccount/acme v3", lines
    assert lines[1][detail_at:] == "shadow node-b confirmed", lines
    assert "a-very-long\u2026 " in lines[0] and "AVeryLongEvent\u2026 " in lines[2], lines
