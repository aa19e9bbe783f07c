"""What ships as a container: the image and the compose file.

Docker need not run here: compose.yaml is checked against the Compose Specification's JSON
Schema (the copy check-jsonschema vendors) and for the facts this project relies on; the
Dockerfile is read as text; the image's health check is run against a loopback server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from jsonschema.validators import validator_for

from shadowline.cli.main import app
from shadowline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
POSTGRES_SERVICES = {"pg-master": "master", "pg-shadow": "shadow"}
INSTANCES = {"master": ("pg-master", "8080"), "shadow": ("pg-shadow", "8081")}
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}` and the forms without the colon.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}$")
SECRET_NAME = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|_KEY$")


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return doc


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def interpolate(text: str) -> str:
    """Compose's interpolation with every variable unset: defaults apply, the rest is 'x'."""
    return VARIABLE.sub(lambda m: m["arg"] if m["op"] in ("-", ":-") else "x", text)


def shadowline_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services(compose).items() if "build" in s}


def subcommands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def instruction(name: str) -> list[str]:
    return [line[len(name) :].strip() for line in dockerfile() if line.upper().startswith(name)]


# -- compose.yaml ------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema carries the compose-spec")
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    spec = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = validator_for(spec)(spec)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []
    assert not validator.is_valid({"services": {"master": {"imagee": "shadowline"}}})


def test_compose_file_uses_the_compose_specification_without_a_version_key(
    compose: dict[str, Any],
) -> None:
    assert "version" not in compose


def test_compose_runs_two_databases_a_broker_a_master_and_a_shadow(compose: dict[str, Any]) -> None:
    assert {"pg-master", "pg-shadow", "rabbitmq", "master", "shadow"} <= set(services(compose))
    for name in POSTGRES_SERVICES:
        assert services(compose)[name]["image"] == "postgres:15"
    assert services(compose)["rabbitmq"]["image"] == "rabbitmq:3.10-management"


def test_master_and_shadow_each_use_a_postgresql_server_of_their_own(
    compose: dict[str, Any],
) -> None:
    hosts = {}
    for name, (database, _) in INSTANCES.items():
        url = urlsplit(interpolate(environment(services(compose)[name])["SHADOWLINE_DATABASE_URL"]))
        assert url.scheme == "postgresql" and url.hostname == database
        assert services(compose)[name]["depends_on"][database]["condition"] == "service_healthy"
        hosts[name] = url.hostname
    assert hosts["master"] != hosts["shadow"]
    volumes = [tuple(services(compose)[db]["volumes"]) for db in POSTGRES_SERVICES]
    assert volumes[0] != volumes[1]


def test_instances_reach_each_other_and_the_host_on_their_own_urls(
    compose: dict[str, Any],
) -> None:
    for name, (_, host_port) in INSTANCES.items():
        service = services(compose)[name]
        env = environment(service)
        assert env["SHADOWLINE_INSTANCE"] == name
        assert env["SHADOWLINE_HTTP_BIND"] == "0.0.0.0:8080"
        assert env["SHADOWLINE_ADVERTISE_URL"] == f"http://{name}:8080"
        assert urlsplit(interpolate(env["SHADOWLINE_AMQP_URL"])).hostname == "rabbitmq"
        assert service["ports"] == [f"{host_port}:8080"]


# What the client commands read (shadowline --help), besides the services' settings.
CLIENT_VARIABLES = {"SHADOWLINE_URL", "SHADOWLINE_USER", "SHADOWLINE_PASSWORD"}


def test_instances_set_only_settings_that_exist(compose: dict[str, Any]) -> None:
    known = {f"SHADOWLINE_{field.upper()}" for field in Settings.model_fields} | CLIENT_VARIABLES
    for service in shadowline_services(compose).values():
        assert {k for k in environment(service) if k.startswith("SHADOWLINE_")} <= known


def test_no_secret_in_the_compose_file_has_a_literal_value(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_VARIABLE.match(value), f"{name}: {key} has a literal value"
            if "://" in value and (password := urlsplit(value).password) is not None:
                assert REQUIRED_VARIABLE.match(password), f"{name}: {key} embeds a password"


def test_every_variable_in_the_compose_file_is_required_or_has_a_default() -> None:
    for match in VARIABLE.finditer((REPO / "compose.yaml").read_text()):
        assert match["op"] in (":?", ":-"), f"${{{match['name']}}} may expand to nothing"


def test_every_dependency_exists_and_is_waited_for_until_healthy(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services(compose), f"{name} depends on unknown {dependency}"
            assert how["condition"] == "service_healthy"
            assert "healthcheck" in services(compose)[dependency]


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if service.get("restart") == "no":  # a one-shot job: nothing to keep healthy
            assert service["healthcheck"] == {"disable": True}, name
            continue
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_shadowline_services_run_real_subcommands(compose: dict[str, Any]) -> None:
    built = shadowline_services(compose)
    assert {"master", "shadow"} <= set(built)
    for name, service in built.items():
        assert "entrypoint" not in service, name
        assert service["command"][0] in subcommands(), name
    assert built["master"]["command"] == built["shadow"]["command"] == ["instance"]
    assert built["watchdog"]["command"][0] == "watchdog"
    assert built["ha-setup"]["command"][:2] == ["ha", "setup"]


# -- Dockerfile and .dockerignore --------------------------------------------------------------


def test_image_is_python_3_11_slim_and_runs_shadowline_instance() -> None:
    assert "PYTHON_IMAGE=python:3.11-slim" in instruction("ARG")
    assert all(line.startswith("${PYTHON_IMAGE}") for line in instruction("FROM"))
    assert json.loads(instruction("ENTRYPOINT")[-1]) == ["shadowline"]
    cmd = json.loads(instruction("CMD")[-1])
    assert cmd == ["instance"] and cmd[0] in subcommands()
    assert instruction("EXPOSE") == ["8080"]


def test_image_runs_as_a_user_other_than_root() -> None:
    user = instruction("USER")[-1].split(":")[0]
    assert user not in ("", "root", "0")


def test_build_context_holds_what_the_wheel_needs_and_nothing_else() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the build context is an allowlist"
    copied = [w for line in instruction("COPY") if "--from" not in line for w in line.split()[:-1]]
    for source in copied:
        assert f"!{source}" in rules, f"{source} is copied but not let into the context"
    assert set(copied) >= {"pyproject.toml", "README.md", "services/", "migrations/", "schemas/"}


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _image_healthcheck(port: int) -> int:
    line = next(line for line in instruction("HEALTHCHECK") if " CMD " in f" {line}")
    argv = json.loads(line.split(" CMD ", 1)[1])
    assert argv[:2] == ["python", "-c"]
    env = {"SHADOWLINE_HTTP_BIND": f"0.0.0.0:{port}"}
    return subprocess.run([sys.executable, "-c", argv[2]], env=env, timeout=30).returncode


def test_image_healthcheck_passes_on_a_healthy_instance_and_fails_otherwise(
    health_server: ThreadingHTTPServer,
) -> None:
    port = health_server.server_address[1]
    assert _image_healthcheck(port) == 0
    _Health.status = 503
    try:
        assert _image_healthcheck(port) != 0
    finally:
        _Health.status = 200
