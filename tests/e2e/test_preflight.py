"""`shadowline ha preflight` (GET /ha/preflight) against real processes: a master, its shadow
and a watchdog in sync pass every check (exit 0); a watchdog never started, maintenance mode, a
stopped shadow and a master without a shadow each fail their check with its reason (exit 1);
a shadow answers from its side; no instance answering is exit 3."""

from __future__ import annotations

from typing import Any

import orjson

from shadowline.harness import free_port
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Pair, Process
from tests.e2e.failover_fixtures import HaCluster, wait_for
from tests.e2e.test_cli import shadowline

ha_cluster = failover_fixtures.ha_cluster
CHECKS = ["role", "shadow", "watchdog", "timing", "clocks", "version", "broker", "peer-probes"]


def preflight(process: Process) -> tuple[int, dict[str, Any]]:
    done = shadowline(process, "ha", "preflight", "--json")
    assert done.exit_code in (0, 1), done.output
    return done.exit_code, orjson.loads(done.stdout)


def checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def failing(doc: dict[str, Any]) -> list[str]:
    return [c["name"] for c in doc["checks"] if not c["ok"]]


def until_only(process: Process, names: list[str], what: str) -> dict[str, Any]:
    """Poll the preflight until exactly `names` fail (a watchdog announces itself once a
    takeover delay, a lost shadow counts as lost after one)."""

    def found() -> dict[str, Any] | None:
        code, doc = preflight(process)
        return doc if failing(doc) == names and code == (1 if names else 0) else None

    return wait_for(found, 60, what, every=0.5)


def until_text(process: Process, code: int) -> str:
    """The text output, polled until the exit code is `code` (a loaded machine may delay a
    heartbeat past the takeover delay for one look)."""

    def found() -> str | None:
        done = shadowline(process, "ha", "preflight")
        return done.stdout if done.exit_code == code else None

    return wait_for(found, 60, f"ha preflight to exit {code}", every=0.5)


def test_a_cluster_in_sync_passes_and_each_fault_fails_its_check(ha_cluster: HaCluster) -> None:
    ha_cluster.set_up(watchdog=False)
    master, shadow = ha_cluster.master, ha_cluster.shadow

    code, doc = preflight(master)
    assert code == 1 and doc["ok"] is False
    assert [c["name"] for c in doc["checks"]] == CHECKS
    watchdog = checks(doc)["watchdog"]
    assert not watchdog["ok"] and "no watchdog heard" in watchdog["detail"]

    ha_cluster.watchdog.start()
    ha_cluster.watchdog.wait_watching()
    doc = until_only(master, [], "every check to pass")
    assert doc["ok"] is True
    found = checks(doc)
    assert "shadow node-b in sync (sync replication)" in found["shadow"]["detail"]
    assert "watchdog-1 watching" in found["watchdog"]["detail"]
    assert "signed call" in found["clocks"]["detail"]
    assert "5/5 signed calls of node-b answered" in found["peer-probes"]["detail"]
    text = until_text(master, 0)
    assert text.splitlines()[-1] == "OK: a failover would succeed now"
    assert "✓ peer-probes" in text

    doc = until_only(shadow, [], "the shadow's side of the same pair to pass")
    assert "the shadow of node-a" in checks(doc)["role"]["detail"]
    assert "this shadow (of node-a) in sync" in checks(doc)["shadow"]["detail"]

    assert shadowline(master, "ha", "maintenance", "on").exit_code == 0
    doc = until_only(master, ["watchdog"], "maintenance to fail the watchdog check")
    assert "maintenance mode is on" in checks(doc)["watchdog"]["detail"]
    text = until_text(master, 1)
    assert "✗ watchdog" in text
    assert text.splitlines()[-1].startswith("FAIL: 1 of 8 checks failed (watchdog)")
    assert shadowline(master, "ha", "maintenance", "off").exit_code == 0
    until_only(master, [], "the checks to pass again after maintenance")

    shadow.stop()
    doc = until_only(
        master,
        ["shadow", "version", "peer-probes"],
        "the stopped shadow to fail its checks",
    )
    found = checks(doc)
    assert "shadow node-b not heard" in found["shadow"]["detail"]
    assert "0/5 signed calls of node-b answered" in found["peer-probes"]["detail"]
    assert "PeerUnreachable" in found["peer-probes"]["detail"]
    assert "not known" in found["version"]["detail"]


def test_a_master_without_a_shadow_fails_and_nothing_answering_is_exit_3(pair: Pair) -> None:
    pair.master.start()
    pair.master.wait_healthy()
    assert shadowline(pair.master, "ha", "enable").exit_code == 0
    code, doc = preflight(pair.master)
    assert code == 1
    found = checks(doc)
    assert found["role"]["ok"] and found["broker"]["ok"] and found["timing"]["ok"]
    assert not found["shadow"]["ok"] and "no shadow has joined" in found["shadow"]["detail"]
    assert not found["peer-probes"]["ok"]

    nobody = shadowline(
        None, "ha", "preflight", "--url", f"http://127.0.0.1:{free_port()}", "--password", "x"
    )
    assert nobody.exit_code == 3, nobody.output
