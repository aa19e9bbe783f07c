"""What ships in the wheel: the package data, the schemas, the benchmarks beside the product,
and the harness inside it that imports nothing of the instance.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator

from shadowline.cli.main import app
from shadowline.domain.events import (
    CONFIG_DELETED,
    CONFIG_PUT,
    GENESIS,
    Event,
    envelope,
    link,
)
from shadowline.domain.kinds import ALL_KINDS

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


# -- helpers -----------------------------------------------------------------------------------


def schema_files() -> list[Path]:
    return sorted(SCHEMAS.rglob("*.json"))


# -- the wheel and the schemas -----------------------------------------------------------------


def test_wheel_carries_the_migrations_and_the_schemas_where_the_package_looks() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"] == {
        "migrations": "shadowline/_migrations",
        "schemas": "shadowline/_schemas",
    }
    for source in wheel["force-include"]:
        assert (REPO / source).is_dir()
    assert (REPO / pyproject["project"]["readme"]).is_file()


SCREEN_TEMPLATES = {"base.html", "screen.html", "_status.html", "login.html", "refused.html"}
AUDIT_TEMPLATES = {"history.html", "state.html", "diff.html"}


def test_wheel_carries_the_screen_templates_inside_the_package_where_jinja_loads_them() -> None:
    """hatch ships every file under the wheel's package directory that neither .gitignore nor
    an exclude drops (`pip wheel . --no-deps` lists shadowline/entrypoints/screen/templates/*.html), and
    the screen loads its templates from the package, not from the source tree."""
    from shadowline.entrypoints.screen.pages import environment

    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    templates = REPO / "services/shadowline/entrypoints/screen/templates"
    assert any(templates.is_relative_to(REPO / p) for p in wheel["targets"]["wheel"]["packages"])
    assert "exclude" not in wheel and "exclude" not in wheel["targets"]["wheel"]
    ignored = (REPO / ".gitignore").read_text().split()
    assert not [rule for rule in ignored if "html" in rule or "templates" in rule]
    shipped = {
        p.name for p in (resources.files("shadowline.entrypoints.screen") / "templates").iterdir()
    }
    assert shipped >= SCREEN_TEMPLATES | AUDIT_TEMPLATES
    for name in shipped:
        environment().get_template(name)  # each one parses


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: str(p.relative_to(SCHEMAS)))
def test_every_shipped_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == DRAFT_2020_12
    Draft202012Validator.check_schema(schema)


def test_there_is_one_config_schema_per_kind() -> None:
    assert {p.stem for p in (SCHEMAS / "config").glob("*.json")} == ALL_KINDS


# -- schemas/event.json ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def event_validator() -> Draft202012Validator:
    schema = json.loads((SCHEMAS / "event.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def sample_event(**changes: Any) -> Event:
    values: dict[str, Any] = {
        "id": uuid4(),
        "position": 1,
        "epoch": 1,
        "type": CONFIG_PUT,
        "kind": "subaccount",
        "name": "eu10-main",
        "version": 1,
        "data": {"region": "cf.eu10.hana.ondemand.com", "subaccount_id": "a1b2"},
        "metadata": {"actor": "admin", "request_id": str(uuid4()), "reason": "onboarding"},
        "recorded_at": datetime(2024, 5, 1, 10, 2, 3, 456789, tzinfo=UTC),
    }
    values.update(changes)
    event = Event(**values)
    return Event(**values, chain=link(GENESIS, event))


def errors_of(validator: Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return [e.message for e in validator.iter_errors(doc)]


def test_event_schema_names_exactly_the_fields_of_the_envelope(
    event_validator: Draft202012Validator,
) -> None:
    fields = set(envelope(sample_event()))
    assert fields == set(event_validator.schema["properties"])
    assert fields == set(event_validator.schema["required"])


@pytest.mark.parametrize(
    "event",
    [
        sample_event(),
        sample_event(metadata={"actor": "admin", "request_id": "r-1"}),
        sample_event(type=CONFIG_DELETED, version=2, data=None),
        sample_event(
            type="Promoted",
            kind=None,
            name=None,
            version=None,
            epoch=2,
            data={"from_epoch": 1},
            metadata={"actor": "watchdog:w1", "request_id": "cmd-1"},
        ),
    ],
    ids=["config-put", "no-reason", "config-deleted", "ha-event"],
)
def test_envelopes_of_the_domain_validate_against_the_event_schema(
    event_validator: Draft202012Validator, event: Event
) -> None:
    assert errors_of(event_validator, envelope(event)) == []


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"position": 0},
        {"kind": None},
        {"chain": "AB" * 32},
        {"recorded_at": "2024-05-01T10:02:03.456789+00:00"},
        {"id": "not-a-uuid"},
        {"metadata": {"actor": "admin"}},
        {"type": CONFIG_DELETED, "data": {"left": "over"}},
    ],
    ids=lambda change: ",".join(change),
)
def test_event_schema_refuses_a_malformed_envelope(
    event_validator: Draft202012Validator, change: dict[str, Any]
) -> None:
    assert errors_of(event_validator, {**envelope(sample_event()), **change}) != []


# -- the benchmarks and the harness --------------------------------------------------------------


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Every module each file under `package` imports by name (static imports only)."""
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_wheel_ships_the_benchmarks_as_a_package_of_their_own_linted_and_type_checked() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert packages == ["services/shadowline", "services/shadowline_bench"]
    assert not (REPO / "services/shadowline/bench").exists()
    assert {"shadowline", "shadowline_bench"} <= set(pyproject["tool"]["mypy"]["packages"])
    assert "services" in pyproject["tool"]["ruff"]["src"]
    assert {"eventsourcing", "aiohttp"} <= {
        re.split(r"[\[<>=]", requirement)[0]
        for requirement in pyproject["project"]["optional-dependencies"]["bench"]
    }


def test_the_product_never_imports_the_benchmarks() -> None:
    found = {
        path: sorted(n for n in names if n.split(".")[0] == "shadowline_bench")
        for path, names in imported_modules(REPO / "services/shadowline").items()
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_the_harness_imports_nothing_of_the_instance_only_settings_client_and_http() -> None:
    allowed = {"shadowline.harness", "shadowline.settings", "shadowline.client"}
    # aio-pika: a private RabbitMQ node (harness.rabbit) is ready once it accepts an AMQP login;
    # orjson reads rabbitmqctl's JSON (harness.rabbit_cluster). Both are the product's own.
    external = {"httpx", "tenacity", "aio_pika", "orjson"}
    wrong = {}
    for path, names in imported_modules(REPO / "services/shadowline/harness").items():
        own = {n for n in names if n.split(".")[0] == "shadowline"}
        outside = {n for n in names - own if n.split(".")[0] not in sys.stdlib_module_names}
        bad = {n for n in own if not any(n == a or n.startswith(f"{a}.") for a in allowed)}
        if bad or outside - external:
            wrong[path] = sorted(bad | (outside - external))
    assert wrong == {}


def test_a_bench_command_says_how_to_install_the_benchmarks_when_they_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from shadowline.cli import bench

    monkeypatch.setattr(bench, "PACKAGE", f"shadowline_bench_{uuid4().hex[:8]}")
    for command in ("append", "replication", "failover"):
        result = CliRunner().invoke(app, ["bench", command, "--help"])
        assert result.exit_code == 0, result.output  # the help needs no benchmark
        result = CliRunner().invoke(app, ["bench", command])
        assert result.exit_code == 2, result.output
        assert "are not installed" in result.output
        assert "pip install 'shadowline[bench]'" in result.output
