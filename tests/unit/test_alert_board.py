"""The alert board: every alert raised once while active, then resolved; pure, clocks by hand."""

from __future__ import annotations

import asyncio
from typing import Any

from shadowline.application.monitoring import Monitor, Uncounted
from shadowline.domain.alerting import AlertBoard, AlertName

LOST, DEAD = AlertName.SHADOW_LOST, AlertName.DEAD_LETTERED


def test_an_alert_is_raised_once_while_active_and_its_repeats_are_counted() -> None:
    board = AlertBoard()
    first = board.raised(LOST, "shadow node-b lost", "master", 100.0, 1.0)
    assert first is not None and first.state == "active" and first.count == 1
    assert board.raised(LOST, "shadow node-b lost", "master", 101.0, 2.0) is None
    done = board.resolve(LOST, "shadow node-b is heard again", 105.0)
    assert done is not None
    assert (done.state, done.count, done.raised_at, done.resolved_at) == (
        "resolved",
        2,
        100.0,
        105.0,
    )
    assert done.resolution == "shadow node-b is heard again"


def test_resolving_an_alert_that_is_not_active_says_nothing() -> None:
    board = AlertBoard()
    assert board.resolve(LOST, "heard again", 1.0) is None
    assert board.listing() == []


def test_after_it_resolved_the_same_alert_is_raised_again_as_a_new_episode() -> None:
    board = AlertBoard()
    board.raised(LOST, "lost", "master", 1.0, 1.0)
    board.resolve(LOST, "heard again", 2.0)
    again = board.raised(LOST, "lost again", "master", 3.0, 3.0)
    assert again is not None and again.raised_at == 3.0
    assert [(e.state, e.message) for e in board.listing()] == [
        ("active", "lost again"),
        ("resolved", "lost"),
    ]


def test_an_events_alert_resolves_after_the_quiet_window_and_a_repeat_restarts_it() -> None:
    board = AlertBoard(quiet=60.0)
    board.raised(DEAD, "poison at 77", "shadow", 1000.0, 10.0)
    assert board.next_expiry() == 70.0
    board.raised(DEAD, "poison at 78", "shadow", 1030.0, 40.0)  # counted: the window restarts
    assert board.expire(1069.0, 69.0) == []
    assert board.next_expiry() == 100.0
    [done] = board.expire(1100.0, 100.0)
    assert (done.name, done.count, done.resolved_at) == (DEAD, 2, 1100.0)
    assert done.resolution == "not again for 60 s (2 in all)"
    assert board.next_expiry() is None


def test_a_conditions_alert_never_resolves_by_quiet_alone() -> None:
    board = AlertBoard(quiet=1.0)
    board.raised(AlertName.FENCED, "fenced", "fenced", 1.0, 1.0)
    assert board.next_expiry() is None
    assert board.expire(1e6, 1e6) == []
    assert board.active(AlertName.FENCED)


def test_the_list_holds_active_alerts_first_newest_first_and_a_bounded_history() -> None:
    board = AlertBoard(kept=3)
    for t, name in enumerate(AlertName):
        board.raised(name, str(name), "master", float(t), float(t))
    for t, name in enumerate(list(AlertName)[:6]):
        board.resolve(name, "done", 100.0 + t)
    listed = board.listing()
    active = [e for e in listed if e.state == "active"]
    resolved = [e for e in listed if e.state == "resolved"]
    assert listed == active + resolved
    assert [e.raised_at for e in active] == sorted((e.raised_at for e in active), reverse=True)
    assert len(active) == len(AlertName) - 6
    assert [e.resolved_at for e in resolved] == [105.0, 104.0, 103.0]  # the last 3 kept


class Published:
    ready = True

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.grew = asyncio.Event()

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        self.bodies.append((routing_key, body))
        self.grew.set()


async def test_the_monitor_publishes_raised_and_resolved_once_each_and_lists_them() -> None:
    published = Published()
    monitor = Monitor(
        instance="node-a",
        publisher=published,
        counts=Uncounted(),
        is_master=lambda: True,
        role=lambda: "master",
        board=AlertBoard(quiet=0.05),
    )
    monitor.alert(LOST, "shadow node-b lost", {"shadow": "node-b", "position": 3})
    monitor.alert(LOST, "shadow node-b lost", {"shadow": "node-b", "position": 3})
    monitor.alert(DEAD, "poison", {"message_id": None, "routing_key": "config.x.put"})
    monitor.resolve(LOST, "shadow node-b is heard again")
    monitor.resolve(LOST, "shadow node-b is heard again")
    while len(published.bodies) < 4:  # the dead-lettered alert resolves after its quiet window
        published.grew.clear()
        await asyncio.wait_for(published.grew.wait(), 5)
    said = [(key, b["state"], b["count"]) for key, b in published.bodies]
    assert said == [
        ("alert.shadow-lost", "active", 1),
        ("alert.dead-lettered", "active", 1),
        ("alert.shadow-lost", "resolved", 2),
        ("alert.dead-lettered", "resolved", 1),
    ]
    rows = monitor.alerts()
    assert {r["state"] for r in rows} == {"resolved"}
    assert set(rows[0]) == {
        "name", "state", "raised_at", "resolved_at", "instance", "role", "message"
    }  # fmt: skip
    assert rows[0]["instance"] == "node-a" and rows[0]["role"] == "master"
    await monitor.stop()
