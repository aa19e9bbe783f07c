"""Several watchdogs on one cluster: the order they act in and when another's word holds one
off (domain.watchdog_peers), the timer of a view (domain.watchdog_wake), and the keys a
watchdog of many clusters checks messages with (domain.watchdog_trust)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from shadowline.domain import trust
from shadowline.domain import watchdog as rules
from shadowline.domain import watchdog_peers as peers
from shadowline.domain import watchdog_wake as wake
from shadowline.domain.watchdog_trust import ANNOUNCEMENT, ClusterKeys
from tests.unit.test_watchdog_rules import DELAY, watching

SCHEMA = Path(__file__).parents[2] / "schemas" / "monitoring" / "watchdog.json"


def names_in_order(cluster: str, *names: str) -> list[str]:
    return sorted(names, key=lambda n: peers.order_key(cluster, n))


def said(watchdog: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "cluster": "c",
        "watchdog": watchdog,
        "phase": "watching",
        "maintenance": False,
        "master": "m",
        "epoch": 1,
        "master_heard": 0.1,
        "master_alive": None,
        "promoting": None,
        "interval": DELAY,
    }
    return doc | fields


def view_of(me: str, now: float = 0.0) -> rules.View:
    return replace(watching(now), name=me)


def hear(view: rules.View, doc: dict[str, Any], now: float, delay: float = 0.0) -> rules.View:
    return rules.heard_watchdog(view, doc, now, delay)


def first_and_second() -> tuple[str, str]:
    first, second = names_in_order("c", "wd-a", "wd-b")
    return first, second


def test_the_watchdogs_of_a_cluster_agree_on_who_acts_first_and_it_differs_between_clusters() -> (
    None
):
    firsts = {names_in_order(f"c{n}", "wd-a", "wd-b")[0] for n in range(40)}
    assert firsts == {"wd-a", "wd-b"}
    first, second = first_and_second()
    a = hear(view_of(first), said(second), 0.0)
    b = hear(view_of(second), said(first), 0.0)
    assert (rules.rank(a, 0.0), rules.rank(b, 0.0)) == (0, 1)


def test_the_second_watchdog_in_order_waits_a_grace_before_it_probes() -> None:
    first, second = first_and_second()
    view = hear(view_of(second), said(first), 0.0)
    assert rules.tick(view, DELAY + 0.1, DELAY).actions == []
    late = DELAY * (1 + peers.GRACE) + 0.1
    assert rules.tick(view, late, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_the_first_watchdog_probes_at_once_whoever_else_watches() -> None:
    first, second = first_and_second()
    view = hear(view_of(first), said(second), 0.0)
    assert rules.tick(view, DELAY + 0.1, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_a_watchdog_holds_off_while_another_probes_and_acts_once_that_probe_is_overdue() -> None:
    first, second = first_and_second()
    now = DELAY * (1 + peers.GRACE) + 0.1
    view = hear(view_of(second), said(first, phase="probing", master_heard=DELAY), now - 0.1)
    held = rules.tick(view, now, DELAY)
    assert held.actions == [] and "is probing master m" in str(held.sentence)
    assert rules.tick(held.view, now + 0.01, DELAY).sentence is None  # said once
    overdue = now - 0.1 + peers.PROBING_HOLD * DELAY + 0.01  # the first died probing
    assert rules.tick(held.view, overdue, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_a_failed_probe_does_not_promote_while_another_watchdogs_probe_found_the_master_alive() -> (
    None
):
    first, second = first_and_second()
    now = 10.0
    view = view_of(first, now)
    master = replace(view.members["m"], seen=now - 5.0)
    members = view.members | {"m": master}
    view = replace(view, members=members, phase="probing", since=now - 0.1)
    view = hear(view, said(second, phase="watching", master_heard=5.0, master_alive=0.3), now)
    decision = rules.probed(view, "m", None, "ConnectError", now, DELAY, False)
    assert decision.actions == [] and decision.view.phase == "watching"
    assert "not promoting" in str(decision.sentence) and "alive" in str(decision.sentence)
    later = now + DELAY  # that word is a takeover delay old: it holds no more
    probing = replace(decision.view, phase="probing", since=later)
    again = rules.probed(probing, "m", None, "ConnectError", later, DELAY, False)
    assert [type(a) for a in again.actions] == [rules.Promote]


def test_another_watchdogs_promotion_holds_one_off_until_its_shadow_is_heard_as_master() -> None:
    first, second = first_and_second()
    now = DELAY * (1 + peers.GRACE) + 0.1
    promoting = {"shadow": "s", "epoch": 2}
    view = hear(view_of(second), said(first, phase="promoting", promoting=promoting), now)
    assert rules.tick(view, now, DELAY).actions == []
    view = rules.observe(view, {**watching_beat("s"), "role": "master", "epoch": 2}, now + 0.2)
    assert rules.master_of(view).instance == "s"  # type: ignore[union-attr]
    assert rules.tick(view, now + 0.3, DELAY).actions == []


def watching_beat(instance: str) -> dict[str, Any]:
    return {
        "instance": instance,
        "role": "shadow",
        "epoch": 1,
        "committed": 10,
        "replication": None,
        "peer": None,
        "peer_url": None,
        "url": f"http://{instance}:8080",
    }


def test_a_promotion_another_watchdog_keeps_claiming_holds_one_off_for_a_bounded_time() -> None:
    first, second = first_and_second()
    start = DELAY * (1 + peers.GRACE) + 0.1
    promoting = {"shadow": "s", "epoch": 2}
    view = view_of(second)
    now = start
    while now < start + peers.PROMOTE_HOLD * DELAY:  # a fresh claim every tenth of a delay
        view = hear(view, claim(first, promoting, now), now)
        assert rules.tick(view, now, DELAY).actions == []
        now += DELAY / 10
    view = hear(view, claim(first, promoting, now), now)
    assert rules.tick(view, now, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_a_probe_another_watchdog_keeps_claiming_holds_one_off_for_a_bounded_time() -> None:
    """A watchdog whose probe hangs (or that lies) reports "probing" afresh every interval: it
    holds the others off for PROBING_CAP delays from its first such report, not for ever."""
    first, second = first_and_second()
    start = DELAY * (1 + peers.GRACE) + 0.1
    view = view_of(second)
    now = start
    while now < start + peers.PROBING_CAP * DELAY:  # a fresh claim every tenth of a delay
        view = hear(view, said(first, phase="probing", master_heard=now), now)
        assert rules.tick(view, now, DELAY).actions == []
        now += DELAY / 10
    view = hear(view, said(first, phase="probing", master_heard=now), now)
    assert rules.tick(view, now, DELAY).actions == [rules.Probe("m", "http://m:8080")]
    # a new probe (after it watched again) is a new claim, held off from its own start
    view = hear(view, said(first, phase="watching", master_heard=now), now)
    view = hear(view, said(first, phase="probing", master_heard=now), now + 0.01)
    assert rules.tick(view, now + 0.02, DELAY).actions == []


def claim(watchdog: str, promoting: dict[str, Any], now: float) -> dict[str, Any]:
    return said(watchdog, phase="promoting", promoting=promoting, master_heard=now)


def test_one_report_of_a_master_heard_just_now_holds_off_for_one_takeover_delay_at_most() -> None:
    first, second = first_and_second()
    view = hear(view_of(first), said(second, master_heard=0.0), 1.5)  # replayed or forged?
    assert rules.tick(view, DELAY + 0.1, DELAY).actions == []
    assert wake.wake(view, DELAY + 0.1, DELAY) == 1.5 + DELAY
    assert rules.tick(view, 1.5 + DELAY, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_a_report_late_in_transit_is_as_old_as_its_delay() -> None:
    first, second = first_and_second()
    view = hear(view_of(first), said(second, master_heard=0.5), DELAY, delay=DELAY)
    assert rules.tick(view, DELAY + 0.1, DELAY).actions == [rules.Probe("m", "http://m:8080")]


def test_a_watchdog_ignores_its_own_announcements_and_forgets_a_silent_peer() -> None:
    first, second = first_and_second()
    view = view_of(second)
    assert hear(view, said(second), 0.0) == view
    view = hear(view, said(first), 0.0)
    assert rules.rank(view, peers.LIVE * DELAY) == 1
    assert rules.rank(view, peers.LIVE * DELAY + 0.1) == 0


def test_a_view_wakes_when_its_master_falls_silent_and_not_before() -> None:
    view = view_of("wd-a", 0.0)
    assert wake.wake(view, 0.0, DELAY) == DELAY
    assert wake.wake(replace(view, members={}), 0.0, DELAY) is None
    assert wake.wake(replace(view, maintenance=True), 0.0, DELAY) is None
    assert wake.wake(replace(view, phase="promoting", since=3.0), 3.0, DELAY) == 3.0 + 2 * DELAY


def test_the_announcement_of_a_view_matches_its_schema() -> None:
    view = replace(
        view_of("wd-a", 0.0), phase="promoting", promoting=rules.Promote("s", 2, "m", "")
    )
    doc = wake.announcement(view, 1.0, DELAY) | {"boot": "0123456789abcdef", "seq": 1, "at": 1e9}
    Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    assert doc["promoting"] == {"shadow": "s", "epoch": 2} and doc["master_heard"] == 1.0


def test_a_clusters_keys_make_the_macs_trust_makes_and_judge_heartbeats_as_trust_does() -> None:
    keys = ClusterKeys("c", "secret")
    body = orjson.dumps(
        {"instance": "m", "role": "master", "cluster": "c", "epoch": 1, "seq": 1,
         "boot": "0123456789abcdef", "sent_at": "2026-01-01T00:00:00Z"}
    )  # fmt: skip
    now = 1767225600.0
    for key in ("heartbeat.m", ANNOUNCEMENT):
        assert keys.mac(key, body) == trust.message_mac("secret", "c", key, body)
    mac = keys.mac("heartbeat.m", body)
    fresh = trust.Freshness()
    for given in (mac, "0" * 64, mac):  # genuine, forged, replayed
        ours = keys.heartbeat("heartbeat.m", body, given, now)
        theirs = trust.heartbeat_refusal("secret", "c", "heartbeat.m", body, given, fresh, now)
        assert ours == theirs
    assert keys.heartbeat("heartbeat.x", body, keys.mac("heartbeat.x", body), now)[0] is None


def test_an_announcement_counts_once_and_only_with_the_clusters_mac() -> None:
    keys = ClusterKeys("c", "secret")
    now = time.time()
    body = orjson.dumps(said("wd-b") | {"boot": "0123456789abcdef", "seq": 3, "at": now})
    mac = keys.mac(ANNOUNCEMENT, body)
    assert keys.announcement(body, "0" * 64, "wd-a", now)[0] is None  # forged
    other = ClusterKeys("d", "secret")
    assert other.announcement(body, other.mac(ANNOUNCEMENT, body), "wd-a", now)[0] is None
    assert keys.announcement(body, mac, "wd-b", now) == (None, None)  # our own: silently
    assert keys.announcement(body, mac, "wd-a", now)[0] is not None
    doc, refusal = keys.announcement(body, mac, "wd-a", now)  # the same again: replayed
    assert doc is None and "replayed" in str(refusal)
    stale = orjson.dumps(said("wd-c") | {"boot": "0123456789abcdef", "seq": 1, "at": now - 60})
    assert keys.announcement(stale, keys.mac(ANNOUNCEMENT, stale), "wd-a", now)[0] is None
