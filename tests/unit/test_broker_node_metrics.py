"""The broker node a process is connected to, on /metrics: the instance's gauge is set from its
HA status (GET /ha's `broker.node`), the watchdog's read from its link at scrape time."""

from __future__ import annotations

from typing import Any

from shadowline.adapters.metrics import Metrics
from shadowline.watchdog.health import health
from shadowline.watchdog.metrics import WatchdogMetrics


def status(node: str | None) -> dict[str, Any]:
    return {
        "instance": "node-a",
        "role": "master",
        "epoch": 1,
        "position": 3,
        "replication": None,
        "shadow": None,
        "master": None,
        "broker": {"node": node},
    }


def test_the_instance_shows_the_node_it_is_on_and_only_that_one() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.refresh(status("10.0.0.1:5672"))
    assert value("shadowline_broker_connected", {"node": "10.0.0.1:5672"}) == 1
    metrics.refresh(status("10.0.0.2:5672"))
    assert value("shadowline_broker_connected", {"node": "10.0.0.2:5672"}) == 1
    assert value("shadowline_broker_connected", {"node": "10.0.0.1:5672"}) is None


def test_the_instance_shows_no_node_while_it_is_connected_to_none() -> None:
    metrics = Metrics()
    metrics.refresh(status(None))
    assert metrics.registry.get_sample_value("shadowline_broker_connected", {"node": ""}) == 0


def test_the_watchdog_shows_the_node_its_link_is_on_when_scraped() -> None:
    on: list[str | None] = ["10.0.0.3:5672"]
    metrics = WatchdogMetrics(["prod"], lambda: [], takeover_delay=2.0, node=lambda: on[0])
    value = metrics.registry.get_sample_value
    assert value("shadowline_watchdog_broker_node", {"node": "10.0.0.3:5672"}) == 1
    on[0] = None
    assert value("shadowline_watchdog_broker_node", {"node": ""}) == 0
    assert value("shadowline_watchdog_broker_node", {"node": "10.0.0.3:5672"}) is None


def test_the_watchdogs_health_names_the_broker_node_it_is_on() -> None:
    assert health("watchdog-1", [], "10.0.0.3:5672")["broker"] == {"node": "10.0.0.3:5672"}
    assert health("watchdog-1", [])["broker"] == {"node": None}
