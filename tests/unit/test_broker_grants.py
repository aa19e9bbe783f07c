"""The topic permissions of `shadowline broker-setup` let each role publish what its code and the
AsyncAPI document say it sends, and nothing of another role's (pure: no broker; the real
broker is in tests/integration/test_broker_setup.py).

Python's `re` reads these patterns as RabbitMQ's PCRE does (anchors, escapes, `(?!)`).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from typer import Exit

from shadowline.cli.broker import DEFAULT_INSTANCES, Grant, check_instances, grants
from tests.unit.test_message_schemas import asyncapi, deref

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "node-a"
ROLE_OF_SCHEME = {"instance": INSTANCE, "watchdog": "watchdog", "publisher": "publisher"}


def _grant(cluster: str, role: str) -> Grant:
    (grant,) = [g for g in grants(cluster, [INSTANCE, "node_b"]) if g.user.endswith(f"-{role}")]
    return grant


def _may_publish(grant: Grant, exchange: str, routing_key: str) -> bool:
    """Regular write on the exchange, then its topic permission (none: every routing key)."""
    if not re.search(grant.write, exchange):
        return False
    topics = [t for t in grant.topics if t.exchange == exchange]
    return all(re.search(t.write, routing_key) for t in topics)


def _values(parameter: dict[str, Any]) -> list[str]:
    parameter = deref(parameter)
    return [str(v) for v in parameter.get("enum") or parameter.get("examples") or []]


def _documented_sends() -> list[tuple[str, str, str, str]]:
    """(operation, scheme, exchange, routing key) for every routing key a send operation of
    the AsyncAPI document can take (every enum value or example of its parameters), with the
    instance parameter standing for the sender itself when an instance sends."""
    found = []
    for name, operation in asyncapi()["operations"].items():
        channel = deref(operation["channel"])
        if operation["action"] != "send" or channel.get("address") is None:
            continue
        exchange, key = channel["address"].removeprefix("/exchanges/").split("/", 1)
        for scheme in (s["$ref"].split("/")[-1] for s in operation["security"]):
            params = {
                p: [INSTANCE] if p == "instance" and scheme == "instance" else _values(spec)
                for p, spec in channel.get("parameters", {}).items()
                if p != "cluster"
            }
            for combination in itertools.product(*params.values()):
                routing_key = key.format(**dict(zip(params, combination, strict=True)))
                found.append((name, scheme, exchange.format(cluster="prod"), routing_key))
    return found


def test_every_routing_key_the_asyncapi_document_has_a_user_send_is_allowed_to_that_user() -> None:
    sends = _documented_sends()
    assert {s for _, s, _, _ in sends} == set(ROLE_OF_SCHEME), "the scan is broken"
    refused = [
        f"{operation}: {scheme} may not publish {key} on {exchange}"
        for operation, scheme, exchange, key in sends
        if not _may_publish(_grant("prod", ROLE_OF_SCHEME[scheme]), exchange, key)
    ]
    assert refused == []


def test_every_monitoring_routing_key_the_instance_code_publishes_is_allowed_to_its_user() -> None:
    product = REPO / "services/shadowline"
    source = "\n".join(
        p.read_text() for d in ("application", "entrypoints") for p in (product / d).rglob("*.py")
    )
    literal = set(re.findall(r"\.?_?publish\(\s*\"([a-z][a-z.-]+)\"", source))
    assert {"role.changed", "config.changed", "failover.switched"} <= literal, "scan broken"
    alerts = deref(asyncapi()["channels"]["alert"]["parameters"]["name"])["enum"]
    keys = {*literal, f"heartbeat.{INSTANCE}", *(f"alert.{name}" for name in alerts)}
    grant = _grant("prod", INSTANCE)
    assert [
        k for k in sorted(keys) if not _may_publish(grant, "shadowline.prod.monitoring", k)
    ] == []


@pytest.mark.parametrize(
    ("role", "exchange", "routing_key"),
    [(INSTANCE, "monitoring", "heartbeat.node_b"),
     (INSTANCE, "monitoring", "heartbeat.node-a.x"),
     (INSTANCE, "monitoring", "failover.promoted"),
     (INSTANCE, "commands", "promote.node_b"),
     (INSTANCE, "dead-letter", ""),
     ("watchdog", "monitoring", "heartbeat.node-a"),
     ("watchdog", "monitoring", "alert.fenced"),
     ("watchdog", "monitoring", "role.changed"),
     ("watchdog", "events", "ha.MasterPromoted"),
     ("monitor", "monitoring", "heartbeat.node-a"),
     ("publisher", "commands", "promote.node_b")],
)  # fmt: skip
def test_no_role_may_publish_what_another_role_sends(
    role: str, exchange: str, routing_key: str
) -> None:
    grant = _grant("prod", role)
    assert not _may_publish(grant, f"shadowline.prod.{exchange}", routing_key)


def test_a_dot_in_the_cluster_name_is_taken_literally() -> None:
    grant = _grant("a.b", INSTANCE)
    assert _may_publish(grant, "shadowline.a.b.events", "ha.HaEnabled")
    assert not _may_publish(grant, "shadowline.aXb.events", "ha.HaEnabled")
    assert not re.search(grant.configure, "shadowline.aXb.commands.node-a")


def test_the_default_instances_are_master_and_shadow_and_names_that_collide_are_refused() -> None:
    assert [g.user for g in grants("prod")][: len(DEFAULT_INSTANCES)] == [
        "shadowline-prod-master",
        "shadowline-prod-shadow",
    ]
    for refused in (["watchdog"], ["node.a"], ["a", "a"], [""]):
        with pytest.raises(Exit):
            check_instances(refused)
    check_instances(["node-a", "node_b"])
