"""The master's alerts about its shadow (shadow-lost, lag): pure rules, fed a clock by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

from jsonschema import Draft202012Validator

from shadowline.domain.alerting import Observation, Watch, observe, position_at

ALERT_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "monitoring" / "alert.json").read_text()
)


def seen(master: int, shadow: int, state: str = "syncing") -> Observation:
    return Observation(
        master_position=master, shadow="node-b", shadow_state=state, shadow_position=shadow
    )


def run(steps: list[tuple[float, Observation]], limit: float = 10.0) -> list[tuple[float, str]]:
    watch = Watch()
    raised: list[tuple[float, str]] = []
    for now, observation in steps:
        watch, alerts, _ = observe(watch, observation, now, lag_limit=limit)
        raised += [(now, a.name) for a in alerts]
    return raised


def test_a_shadow_that_keeps_up_under_steady_load_never_raises_lag() -> None:
    # The master writes 100 events a second; the shadow is always 50 events (half a second) behind.
    steps = [(float(t), seen(100 * t, max(0, 100 * t - 50))) for t in range(60)]
    assert run(steps) == []


def test_a_shadow_stuck_at_a_position_raises_lag_once_after_the_limit() -> None:
    steps = [(float(t), seen(100 * t, 500 if t > 5 else 100 * t)) for t in range(40)]
    raised = run(steps)
    assert [name for _, name in raised] == ["lag"]
    # Stuck at 500 (the master's position at t=5): behind the limit's worth once t - 10 > 5.
    assert raised[0][0] == 16.0


def test_lag_is_raised_again_only_after_the_shadow_caught_up_in_between() -> None:
    stuck = [(float(t), seen(100 * t, 0)) for t in range(1, 20)]
    caught_up = [(float(t), seen(2000, 2000)) for t in range(20, 40)]
    stuck_again = [(float(t), seen(2000 + 100 * (t - 40), 2000)) for t in range(40, 60)]
    assert [name for _, name in run(stuck + caught_up + stuck_again)] == ["lag", "lag"]


def test_an_idle_master_with_a_shadow_behind_by_old_events_is_lagging() -> None:
    # Nothing new is written, but the shadow never reached what the master had long ago.
    steps = [(float(t), seen(1000, 400)) for t in range(30)]
    assert [name for _, name in run(steps)] == ["lag"]


def test_a_lost_shadow_raises_shadow_lost_once_per_episode_and_no_lag() -> None:
    steps = [(float(t), seen(100 * t, 0, "lost")) for t in range(30)]
    steps += [(float(t), seen(3000, 3000, "connected")) for t in range(30, 35)]
    steps += [(float(t), seen(3000, 3000, "lost")) for t in range(35, 40)]
    assert [name for _, name in run(steps)] == ["shadow-lost", "shadow-lost"]


def test_the_watch_keeps_only_the_samples_the_limit_needs() -> None:
    watch = Watch()
    for t in range(1000):
        watch, _, _ = observe(watch, seen(t, t, "connected"), float(t), lag_limit=10.0)
    assert len(watch.samples) <= 12
    assert position_at(watch.samples, 989.0) == 989
    assert position_at(watch.samples, 900.0) is None


def test_the_alerts_raised_match_their_published_schema() -> None:
    validator = Draft202012Validator(ALERT_SCHEMA)
    watch = Watch()
    bodies = []
    steps = [
        (0.0, seen(0, 0)),
        (5.0, seen(500, 0)),
        (20.0, seen(900, 0)),
        (21.0, seen(900, 0, "lost")),
    ]
    for t, observation in steps:
        watch, alerts, _ = observe(watch, observation, t, lag_limit=10.0)
        bodies += [
            # As Monitor.alert and Monitor.publish build them.
            {"instance": "node-a", "at": time.time(), "alert": a.name, "message": a.message}
            | {"state": "active", "role": "master", "raised_at": time.time(), "count": 1}
            | {"details": a.details}
            for a in alerts
        ]
    assert [b["alert"] for b in bodies] == ["lag", "shadow-lost"]
    for body in bodies:
        assert [e.message for e in validator.iter_errors(body)] == []
