"""compose.cluster.yaml: the compose system on a 3-node RabbitMQ cluster (an override file).

Docker need not run here: the file is checked against the Compose Specification's JSON Schema,
merged over compose.yaml as `docker compose -f compose.yaml -f compose.cluster.yaml` merges
mappings, and the merged system checked for what the cluster relies on.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema.validators import validator_for

from shadowline.settings import Settings
from tests.unit.test_container import environment, interpolate, shadowline_services

REPO = Path(__file__).resolve().parents[2]
NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return doc


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override file: mappings merge key by key, the rest is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return merged(load("compose.yaml"), load("compose.cluster.yaml"))


def test_the_cluster_override_is_valid_against_the_compose_specification() -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema carries the compose-spec")
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    spec = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = validator_for(spec)(spec)
    for doc in (
        load("compose.cluster.yaml"),
        merged(load("compose.yaml"), load("compose.cluster.yaml")),
    ):
        assert [e.message for e in validator.iter_errors(doc)] == []


def test_three_broker_nodes_with_their_own_data_form_one_cluster_that_pauses_a_minority(
    cluster: dict[str, Any],
) -> None:
    services = cluster["services"]
    volumes = set()
    for node in NODES:
        service = services[node]
        assert service["hostname"] == node
        data = [v for v in service["volumes"] if v.endswith(":/var/lib/rabbitmq")]
        assert len(data) == 1
        volumes.add(data[0])
        assert (
            "./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro"
            in (service["volumes"])
        )
        assert environment(service)["RABBITMQ_ERLANG_COOKIE"].startswith(
            "${RABBITMQ_ERLANG_COOKIE:?"
        )
    assert len(volumes) == 3
    conf = (REPO / "deploy/rabbitmq/cluster.conf").read_text()
    assert "cluster_partition_handling = pause_minority" in conf
    for i, node in enumerate(NODES, 1):
        assert f"cluster_formation.classic_config.nodes.{i} = rabbit@{node}" in conf
    for name in cluster["volumes"]:
        assert name in {
            v.partition(":")[0] for s in services.values() for v in s.get("volumes", [])
        }


def test_every_shadowline_process_is_given_all_three_nodes(cluster: dict[str, Any]) -> None:
    for name, service in shadowline_services(cluster).items():
        env = environment(service)
        if name == "ha-setup":  # it talks HTTP only
            continue
        urls = interpolate(env["SHADOWLINE_AMQP_URL"]).split(",")
        assert [urlsplit(u).hostname for u in urls] == list(NODES), name
        assert {urlsplit(u).username for u in urls} == {"shadowline"}
        # The rest of each service's environment is compose.yaml's, kept by the merge.
        assert env["SHADOWLINE_INSTANCE"] and env["SHADOWLINE_CLUSTER_SECRET"]
        settings = Settings(amqp_url=interpolate(env["SHADOWLINE_AMQP_URL"]))  # type: ignore[arg-type]
        assert settings.amqp_url.get_secret_value().count("amqp://") == 3
