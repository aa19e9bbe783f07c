"""The console script starts light (issue 13): `shadowline --help`, `config get` and `ha status`
import no database, broker or server library before their first request, and a command builds
only its own part of the tree. Each case is a fresh interpreter (this one has imported them
all); the figures are `shadowline bench cli`'s, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from shadowline.cli.markup import escape

NOWHERE = "http://127.0.0.1:9"  # nothing listens: connection refused, exit 3
HEAVY = {
    "sqlalchemy",
    "aio_pika",
    "aiormq",
    "asyncpg",
    "alembic",
    "uvicorn",
    "fastapi",
    "starlette",
    "pydantic_settings",
    "shadowline.settings",
    "shadowline.runtime",
    "shadowline.watchdog_runtime",
    "shadowline.cli.demo",
    "shadowline_bench",
}
# Runs the console script's entry point as `shadowline ARGS`, then prints the modules it loaded.
RUN_MAIN = """
import json, sys
from shadowline.cli.main import main
sys.argv = ["shadowline", *sys.argv[1:]]
try:
    main()
except SystemExit as end:
    code = end.code
print("\\nexit", code, json.dumps(sorted(sys.modules)))
"""


def modules_after(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *args], capture_output=True, text=True, check=False
    )
    last = done.stdout.rstrip().rsplit("\n", 1)[-1]
    assert last.startswith("exit "), done.stdout + done.stderr
    code, names = last.removeprefix("exit ").split(" ", 1)
    return int(code), set(orjson.loads(names))


def imported(modules: set[str], wanted: set[str]) -> set[str]:
    return {m for m in modules if m in wanted or m.split(".")[0] in wanted}


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["--help"], 0),
        (["config", "get", "system-mapping", "x", "--url", NOWHERE], 3),
        (["ha", "status", "--url", NOWHERE], 3),
    ],
    ids=["--help", "config get", "ha status"],
)
def test_a_client_command_imports_no_database_broker_or_server_library(
    args: list[str], exit_code: int
) -> None:
    code, modules = modules_after(*args)
    assert code == exit_code
    assert imported(modules, HEAVY) == set()


def test_importing_the_whole_command_tree_imports_none_of_them_either() -> None:
    script = (
        "import json, sys, typer; from shadowline.cli.main import app; "
        "typer.main.get_command(app); print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    modules = set(orjson.loads(done.stdout))
    assert {"shadowline.cli.users", "shadowline.cli.watch", "shadowline.cli.bench"} <= modules
    assert imported(modules, HEAVY | {"httpx"}) == set()


def test_a_command_loads_only_its_own_module_of_the_tree() -> None:
    code, modules = modules_after("config", "get", "system-mapping", "x", "--url", NOWHERE)
    assert code == 3
    assert "shadowline.cli.config" in modules
    others = {"ha", "history", "users", "audit", "bench", "watch", "broker"}
    assert {m for m in modules if m.removeprefix("shadowline.cli.") in others} == set()


def test_a_name_that_is_no_command_still_gets_the_whole_tree_and_its_suggestion() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN_MAIN, "confgi"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "No such command 'confgi'. Did you mean 'config'?" in done.stderr
    assert done.stdout.rstrip().endswith("]") and "\nexit 2 " in done.stdout


@pytest.mark.parametrize(
    "text",
    [
        """shadowline config put subaccount acme '{"region": "eu10"}'""",
        "shadowline users list --json | jq -r '.[] | select(.role == \"admin\") | .name'",
        "[bold]not markup[/bold] [link=x] [#fff] [@click] [/]",
        "\\[already escaped] \\\\[two backslashes] trailing\\",
        "[A-Z] [1] [] [ x ]",
    ],
)
def test_the_help_escapes_text_exactly_as_rich_does(text: str) -> None:
    from rich.markup import escape as rich_escape

    assert escape(text) == rich_escape(text)
