"""The preflight's checks (domain.preflight, domain.preflight_reach): pure functions of what was
observed, each a verdict and a sentence that says what to do."""

from __future__ import annotations

import pytest

from shadowline.domain import preflight as rules
from shadowline.domain import preflight_reach as reach
from shadowline.domain.ha import timing_problem
from shadowline.settings import Settings


def _sync(**changes: object) -> rules.Sync:
    base: dict[str, object] = {
        "on_master": True,
        "peer": "node-b",
        "state": "connected",
        "confirmed": True,
        "lag_events": 0,
        "lag_seconds": 0.0,
        "heard_age": 0.4,
        "replication": "sync",
    }
    return rules.Sync(**{**base, **changes})  # type: ignore[arg-type]


def _dog(**changes: object) -> rules.WatchdogSeen:
    base: dict[str, object] = {
        "name": "w1",
        "age": 1.0,
        "interval": 5.0,
        "maintenance": False,
        "phase": "watching",
    }
    return rules.WatchdogSeen(**{**base, **changes})  # type: ignore[arg-type]


def test_the_verdict_is_ok_only_when_every_check_is() -> None:
    good, bad = rules.Check("a", True, "fine"), rules.Check("b", False, "broken")
    assert rules.verdict([good, good]) == {
        "ok": True,
        "checks": [{"name": "a", "ok": True, "detail": "fine"}] * 2,
    }
    assert rules.verdict([good, bad])["ok"] is False
    assert rules.verdict([])["ok"] is True


def test_the_role_check_passes_on_master_and_shadow_and_says_which_side_answers() -> None:
    assert rules.role_check("master", 3, "node-b", "http://b").ok
    shadow = rules.role_check("shadow", 3, "node-a", "http://a:8080")
    assert shadow.ok and "ask the master, http://a:8080" in shadow.detail
    fenced = rules.role_check("fenced", 3, "node-b", "http://b")
    assert not fenced.ok and "fenced" in fenced.detail
    alone = rules.role_check("standalone", 1, None, None)
    assert not alone.ok and "shadowline ha setup" in alone.detail


def test_a_shadow_in_sync_passes_with_its_lag_in_events_and_seconds() -> None:
    check = rules.shadow_check(_sync(lag_events=2, lag_seconds=0.01), lost_after=5)
    assert check.ok, check.detail
    assert "shadow node-b in sync (sync replication): 2 events, 0.0 s behind" in check.detail


def test_no_shadow_fails_and_says_how_to_join_one() -> None:
    check = rules.shadow_check(_sync(peer=None, state=None, confirmed=False), lost_after=5)
    assert not check.ok and "shadowline ha join" in check.detail


def test_a_pending_shadow_fails_until_confirmed() -> None:
    check = rules.shadow_check(_sync(state="pending", confirmed=False), lost_after=5)
    assert not check.ok and "shadowline ha confirm" in check.detail


@pytest.mark.parametrize("age", [None, 5.01, 60.0])
def test_a_shadow_not_heard_within_the_takeover_delay_fails(age: float | None) -> None:
    check = rules.shadow_check(_sync(heard_age=age, state="lost"), lost_after=5)
    assert not check.ok
    assert "shadow node-b not heard" in check.detail and "takeover delay is 5 s" in check.detail


def test_a_shadow_behind_in_async_replication_fails_as_a_watchdog_would_refuse_it() -> None:
    check = rules.shadow_check(_sync(lag_events=7, replication="async"), lost_after=5)
    assert not check.ok
    assert "7 events" in check.detail and "refuses to promote" in check.detail
    caught_up = rules.shadow_check(_sync(lag_events=0, replication="async"), lost_after=5)
    assert caught_up.ok


def test_on_a_shadow_the_check_is_about_its_own_contact_with_the_master() -> None:
    ok = rules.shadow_check(_sync(on_master=False, peer="node-a", state=None), lost_after=5)
    assert ok.ok and "this shadow (of node-a) in sync" in ok.detail
    lost = rules.shadow_check(
        _sync(on_master=False, peer="node-a", state=None, heard_age=None), lost_after=5
    )
    assert not lost.ok and "master node-a not heard" in lost.detail
    unconfirmed = rules.shadow_check(
        _sync(on_master=False, peer="node-a", state=None, confirmed=False), lost_after=5
    )
    assert not unconfirmed.ok and "not confirmed" in unconfirmed.detail


def test_a_live_watchdog_passes() -> None:
    check = rules.watchdog_check([_dog()], maintenance=False, default_interval=5)
    assert check.ok and "w1 watching 1.0 s ago" in check.detail


def test_maintenance_mode_fails_the_watchdog_check_and_says_how_to_end_it() -> None:
    check = rules.watchdog_check([_dog()], maintenance=True, default_interval=5)
    assert not check.ok and "shadowline ha maintenance off" in check.detail


def test_a_watchdog_that_says_maintenance_or_refused_holds_back() -> None:
    for dog in (_dog(maintenance=True), _dog(phase="refused")):
        check = rules.watchdog_check([dog], maintenance=False, default_interval=5)
        assert not check.ok and "holds back" in check.detail
    mixed = rules.watchdog_check(
        [_dog(maintenance=True), _dog(name="w2")], maintenance=False, default_interval=5
    )
    assert mixed.ok


def test_no_watchdog_ever_heard_fails_and_says_to_start_one() -> None:
    check = rules.watchdog_check([], maintenance=False, default_interval=5)
    assert not check.ok and "shadowline watchdog" in check.detail and "30 s off" in check.detail


def test_a_watchdog_silent_for_three_intervals_is_gone() -> None:
    assert rules.live(_dog(age=15.0), 5)
    gone = rules.watchdog_check([_dog(age=15.01)], maintenance=False, default_interval=5)
    assert not gone.ok and "w1 15 s ago" in gone.detail
    # Without an interval of its own (a failover step), the instance's takeover delay counts.
    assert not rules.live(_dog(interval=None, age=7.0), 2)


def test_the_timing_rule_is_the_one_settings_check_at_start() -> None:
    settings = Settings(takeover_delay=5, heartbeat_interval=1)
    assert timing_problem(settings.lease, settings.lease_margin, settings.takeover_delay) is None
    with pytest.raises(ValueError, match="timing rule broken"):
        Settings(takeover_delay=2, heartbeat_interval=1)
    assert timing_problem(3.0, 1.0, 4.0) is not None  # equal is broken, as at start


def test_the_timing_check_holds_every_lease_against_every_takeover_delay() -> None:
    leases = [("node-a", 3.0, 1.0), ("node-b", 3.0, 1.0)]
    ok = rules.timing_check(leases, [("node-a", 5.0), ("watchdog w1", 5.0)])
    assert ok.ok and "shortest: node-a's 5 s" in ok.detail
    # A watchdog started with a shorter takeover delay than the instances' lease allows.
    broken = rules.timing_check(leases, [("node-a", 5.0), ("watchdog w1", 3.5)])
    assert not broken.ok
    assert "timing rule broken" in broken.detail and "watchdog w1's delay" in broken.detail


def test_clocks_within_half_the_command_window_pass() -> None:
    assert reach.CLOCK_LIMIT == 15.0
    offsets = [reach.Offset("node-b", 0.004, "signed call"), reach.Offset("w1", -0.01, "at")]
    check = reach.clock_check(offsets)
    assert check.ok and "node-b +0.004 s (signed call)" in check.detail


def test_clocks_apart_by_more_than_the_limit_fail_even_if_each_is_close_to_ours() -> None:
    offsets = [reach.Offset("node-b", 8.0, "signed call"), reach.Offset("w1", -8.0, "at")]
    check = reach.clock_check(offsets)
    assert not check.ok and "differ by 16.0 s" in check.detail and "NTP" in check.detail


def test_a_clock_not_known_fails_the_check() -> None:
    check = reach.clock_check([reach.Offset("the watchdogs", None, "none heard lately")])
    assert not check.ok and "the watchdogs (none heard lately)" in check.detail


def test_versions_must_be_equal_and_the_sentence_names_master_and_shadow() -> None:
    assert reach.version_check(True, ("1.0", "0006"), ("1.0", "0006")).ok
    on_shadow = reach.version_check(False, ("1.0", "0006"), ("1.1", "0007"))
    assert not on_shadow.ok
    assert "master runs shadowline 1.1 (schema 0007)" in on_shadow.detail
    assert "shadow runs shadowline 1.0 (schema 0006)" in on_shadow.detail
    unknown = reach.version_check(True, ("1.0", "0006"), None)
    assert not unknown.ok and "not known" in unknown.detail


def test_every_broker_node_must_answer() -> None:
    up = [reach.NodeAnswer("h1:5672", 0.002, None), reach.NodeAnswer("h2:5672", 0.003, None)]
    check = reach.broker_check(up)
    assert check.ok and "all 2 RabbitMQ node(s) answered: h1:5672 2.0 ms" in check.detail
    down = reach.broker_check([up[0], reach.NodeAnswer("h2:5672", 2.0, "TimeoutError")])
    assert not down.ok and "1 of 2 RabbitMQ nodes did not answer (h2:5672: TimeoutError)" in (
        down.detail
    )


def test_probes_report_min_median_max_against_the_timeouts() -> None:
    probes = [reach.Probe(s) for s in (0.001, 0.002, 0.003, 0.010, 0.004)]
    check = reach.probe_check("node-b", probes, 5, 10, 30)
    assert check.ok
    assert "5/5 signed calls of node-b answered: latency min/median/max 1.0/3.0/10.0 ms" in (
        check.detail
    )
    assert "connect timeout 10 s, request timeout 30 s" in check.detail


def test_probes_count_errors_and_timeouts_and_the_ones_not_sent() -> None:
    probes = [
        reach.Probe(0.002),
        reach.Probe(None, "PeerUnreachable: refused"),
        reach.Probe(None, "Unavailable: ReadTimeout", timed_out=True),
    ]
    check = reach.probe_check("node-b", probes, 5, 10, 30)
    assert not check.ok
    assert "1/5 signed calls of node-b answered: 1 timed out, 1 failed, 2 not sent" in (
        check.detail
    )
    assert "first error: PeerUnreachable: refused" in check.detail
    none = reach.probe_check("node-b", [reach.Probe(None, "x")] * 5, 5, 10, 30)
    assert not none.ok and "no latency measured" in none.detail
    assert not reach.probe_check(None, [], 5, 10, 30).ok
