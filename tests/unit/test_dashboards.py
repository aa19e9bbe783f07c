"""The shipped Grafana dashboard and Prometheus rules: their structure, their PromQL, and that
every metric (and label) they query is one the instance or the watchdog really exposes.

The exposition here comes from the real `Metrics` and `WatchdogMetrics` classes fed with a
master's status and a watchdog's view; tests/e2e/test_metrics.py checks the same references
against live processes. Every expression is parsed with promql-parser (a PromQL parser from
PyPI); Prometheus' own promtool checks the rules and runs their unit tests when it is on PATH
(or named by $PROMTOOL), e.g. from Debian's prometheus package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shadowline.adapters.metrics import Metrics
from shadowline.domain import watchdog as rules
from shadowline.watchdog.metrics import Seen, WatchdogMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "shadowline-dashboard.json"
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "shadowline-alerts.yml"
SEVERITIES = {"critical", "warning", "info"}
# Labels that Prometheus attaches (target labels of deploy/prometheus/prometheus.yml), and the
# one series it makes itself.
TARGET_LABELS = {"job", "instance", "cluster"}
SYNTHETIC = {"up"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


# -- what the code exposes -------------------------------------------------------------------


@dataclass
class Exposed:
    """Sample names of an exposition, with the labels and values each was seen with."""

    labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, text: str) -> Exposed:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                seen = self.labels.setdefault(sample.name, {})
                for name, value in sample.labels.items():
                    seen.setdefault(name, set()).add(value)
        return self


def master_status() -> dict[str, Any]:
    """GET /ha of a master with a connected shadow (the shape HaService.status returns)."""
    return {
        "instance": "node-a",
        "role": "master",
        "epoch": 1,
        "position": 42,
        "version": "0",
        "replication": "sync",
        "shadow": {
            "instance": "node-b",
            "state": "connected",
            "position": 42,
            "lag_events": 0,
            "last_seen_age": 0.2,
        },
        "master": None,
    }


def instance_exposition() -> str:
    metrics = Metrics()
    metrics.observe_batch(4, 0.003)
    metrics.refresh(master_status())
    return generate_latest(metrics.registry).decode()


def watchdog_exposition() -> str:
    now = time.monotonic()
    view = rules.View("prod", started=now - 10)
    for beat in (
        {"instance": "node-a", "role": "master", "epoch": 1, "committed": 42, "peer": "node-b"},
        {"instance": "node-b", "role": "shadow", "epoch": 1, "committed": 42, "peer": "node-a"},
    ):
        view = rules.observe(view, beat, now)
    metrics = WatchdogMetrics(["prod"], lambda: [Seen("prod", view, True)], takeover_delay=2.0)
    return generate_latest(metrics.registry).decode()


# -- what the dashboard and the rules query --------------------------------------------------


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def label_values_query(query: str) -> str:
    """`label_values(SELECTOR, label)` of a Grafana variable -> SELECTOR (PromQL)."""
    found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert found, f"not a label_values() query: {query}"
    return found.group(1)


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query in the dashboard and the alert rules."""
    doc = dashboard()
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in doc["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", label_values_query(variable["query"]["query"])
    for rule in alert_rules():
        yield f"alert {rule['alert']}", rule["expr"]


def parse(expr: str) -> Any:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[Any]:
    found: list[Any] = []
    promql_parser.walk(
        parse(expr),
        pre_visit=lambda node: (
            found.append(node) if isinstance(node, promql_parser.VectorSelector) else None
        ),
    )
    return found


def metric_name(selector: Any) -> str:
    if selector.name:
        return str(selector.name)
    names = [m.value for m in selector.matchers.matchers if m.name == "__name__"]
    assert names, f"a selector without a metric name: {selector}"
    return str(names[0])


def drift(exposed: Exposed) -> list[str]:
    """Every metric, label and label value queried but not exposed, as sentences."""
    problems = []
    for where, expr in expressions():
        for selector in selectors(expr):
            name = metric_name(selector)
            if name in SYNTHETIC:
                continue
            if name not in exposed.labels:
                problems.append(f"{where}: {name} is not exposed")
                continue
            labels = exposed.labels[name]
            for matcher in selector.matchers.matchers:
                if matcher.name in TARGET_LABELS | {"__name__"}:
                    continue
                if matcher.name not in labels:
                    problems.append(f"{where}: {name} has no label {matcher.name}")
                elif matcher.op == promql_parser.MatchOp.Equal:
                    if matcher.value not in labels[matcher.name]:
                        problems.append(f"{where}: {name}{{{matcher.name}={matcher.value!r}}}")
                elif matcher.op == promql_parser.MatchOp.Re and not any(
                    re.fullmatch(matcher.value, v) for v in labels[matcher.name]
                ):
                    problems.append(f"{where}: {name}{{{matcher.name}=~{matcher.value!r}}}")
    return problems


# -- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_model_with_a_prometheus_datasource_variable() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"]
    assert 36 <= doc["schemaVersion"] <= 41
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cluster"]["datasource"]["uid"] == "${datasource}"


def test_every_dashboard_panel_queries_prometheus_through_the_datasource_variable() -> None:
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}"


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_shows_each_documented_subject() -> None:
    queried = " ".join(expr for _, expr in expressions())
    for metric in (
        "shadowline_role",
        "shadowline_epoch",
        "shadowline_committed_position",
        "shadowline_applied_position",
        "shadowline_published_position",
        "shadowline_replication_lag_events",
        "shadowline_replication_lag_seconds_now",
        "shadowline_heartbeat_confirmed_age_seconds",
        "shadowline_peer_heartbeat_age_seconds",
        "shadowline_append_batch_seconds_bucket",
        "shadowline_append_batch_size_bucket",
        "shadowline_promotions_total",
        "shadowline_rejected_commands_total",
        "shadowline_alerts_total",
        "shadowline_watchdog_state",
    ):
        assert metric in queried, metric


# -- the alert rules -------------------------------------------------------------------------


def test_every_alert_rule_has_an_expression_a_duration_a_severity_and_annotations() -> None:
    found = alert_rules()
    assert len({r["alert"] for r in found}) == len(found), "alert names repeat"
    for rule in found:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alert_rules_cover_the_failure_modes_operators_page_on() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "ShadowlineShadowLagHigh",
        "ShadowlineReplicationDegraded",
        "ShadowlineHeartbeatNotConfirmed",
        "ShadowlineMasterHeartbeatStale",
        "ShadowlineInstanceFenced",
        "ShadowlineTwoMasters",
        "ShadowlineNoMaster",
        "ShadowlinePromotion",
        "ShadowlineForgedCommand",
        "ShadowlineRejectedCommand",
        "ShadowlineWatchdogDown",
        "ShadowlineTargetDown",
    } <= names


def test_the_example_scrape_config_uses_basic_auth_for_instances_and_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "basic_auth" in jobs["shadowline"]
    assert all("cluster" in t["labels"] for t in jobs["shadowline"]["static_configs"])
    assert "basic_auth" not in jobs["shadowline-watchdog"]
    for job in jobs.values():  # the watchdog's metrics carry `cluster` themselves
        expected = job["job_name"] == "shadowline"
        assert all(("cluster" in t.get("labels", {})) == expected for t in job["static_configs"])


# -- PromQL ----------------------------------------------------------------------------------


def test_every_promql_expression_parses() -> None:
    problems = []
    for where, expr in expressions():
        try:
            parse(expr)
        except ValueError as error:
            problems.append(f"{where}: {error}: {expr}")
    assert problems == []


def test_a_broken_expression_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError):
        parse("sum(rate(shadowline_alerts_total[$__rate_interval])")


def test_every_queried_metric_label_and_value_is_exposed_by_the_instance_or_the_watchdog() -> None:
    exposed = Exposed().add(instance_exposition()).add(watchdog_exposition())
    assert drift(exposed) == []


def test_a_renamed_metric_would_be_reported_as_drift() -> None:
    exposed = Exposed().add(instance_exposition()).add(watchdog_exposition())
    del exposed.labels["shadowline_shadow_state"]
    exposed.labels["shadowline_rejected_commands_total"]["reason"] = {"other"}
    problems = drift(exposed)
    assert any("shadowline_shadow_state is not exposed" in p for p in problems)
    assert any("shadowline_rejected_commands_total{reason=~" in p for p in problems)


# -- promtool, where it is installed ---------------------------------------------------------


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        # .ci/run unpacks Debian's promtool (no daemon) and sets PROMTOOL: in CI this must run.
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("promtool is missing under CI=true (.ci/run should have set PROMTOOL)")
        pytest.skip("promtool is not installed (Debian: the prometheus package)")
    return found


@pytest.mark.parametrize(
    "arguments",
    [
        ("check", "rules", "shadowline-alerts.yml"),
        ("test", "rules", "shadowline-alerts.test.yml"),
        ("check", "config", "prometheus.yml"),
    ],
)
def test_promtool_accepts_the_rules_their_unit_tests_and_the_scrape_config(
    arguments: tuple[str, str, str],
) -> None:
    done = subprocess.run(
        [promtool(), *arguments], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
