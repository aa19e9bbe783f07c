"""The role supervisor runs exactly the tasks the role wants, from the factories it is given, and
retries failing work with backoff; the monitor counts every alert but throttles what it says."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from shadowline.application import supervisor as supervisor_module
from shadowline.application.monitoring import Monitor
from shadowline.application.supervisor import (
    RoleChanges,
    Supervisor,
    retrying,
    wanted_tasks,
)
from shadowline.domain.alerting import AlertName
from shadowline.domain.roles import FenceReason


@dataclass
class Role:
    role: str = "standalone"
    fence: FenceReason | None = None


@dataclass
class Record:
    shadow_state: str | None = None


@dataclass
class Ha:
    role: Role = field(default_factory=Role)
    record: Record | None = field(default_factory=Record)


@pytest.mark.parametrize(
    ("role", "fence", "shadow_state", "wanted"),
    [
        ("standalone", None, None, set()),
        ("master", None, None, {"heartbeats", "commands", "lease", "config-commands"}),
        ("master", None, "confirmed",
         {"heartbeats", "commands", "lease", "config-commands", "relay", "peer-watch"}),
        ("master", FenceReason.STARTING, "confirmed",
         {"heartbeats", "commands", "lease", "config-commands"}),
        ("master", FenceReason.LEASE_LOST, "confirmed",
         {"heartbeats", "commands", "lease", "config-commands", "relay", "peer-watch"}),
        ("shadow", None, None, {"heartbeats", "commands", "replica"}),
    ],
)  # fmt: skip
def test_each_role_wants_the_tasks_it_always_ran(
    role: str, fence: FenceReason | None, shadow_state: str | None, wanted: set[str]
) -> None:
    assert wanted_tasks(Ha(Role(role, fence), Record(shadow_state))) == wanted


class Factories:
    """Role tasks that record how they were started and run until cancelled."""

    def __init__(self, *names: str) -> None:
        self.started: list[tuple[str, bool]] = []
        self.stopped: list[str] = []
        self.tasks = {name: self._task(name) for name in names}

    def _task(self, name: str) -> Any:
        async def run(first: bool) -> None:
            self.started.append((name, first))
            try:
                await asyncio.Future()
            finally:
                self.stopped.append(name)

        return run


async def _until(what: str, condition: Any, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_a_role_change_starts_the_tasks_the_new_role_wants_and_stops_the_others() -> None:
    ha = Ha(Role("shadow"))
    factories = Factories(
        "heartbeats", "commands", "replica", "lease", "config-commands", "relay", "peer-watch"
    )
    changes = RoleChanges()
    supervisor = Supervisor(factories.tasks, lambda: wanted_tasks(ha), changes)
    await supervisor.reconcile()
    await _until("the shadow's tasks", lambda: len(factories.started) == 3)
    assert supervisor.running == {"heartbeats", "commands", "replica"}
    ha.role.role = "master"
    await changes.fire()
    assert supervisor.running == {"heartbeats", "commands", "lease", "config-commands"}
    assert factories.stopped == ["replica"]
    await _until("the master's tasks", lambda: len(factories.started) == 5)
    # Started with the process: `first`; started by the promotion: not.
    assert sorted(factories.started) == [
        ("commands", True),
        ("config-commands", False),
        ("heartbeats", True),
        ("lease", False),
        ("replica", True),
    ]
    await supervisor.stop()
    assert sorted(factories.stopped) == ["commands", "config-commands", "heartbeats", "lease",
                                         "replica"]  # fmt: skip


async def test_a_task_the_role_wants_but_no_factory_makes_is_not_run() -> None:
    factories = Factories("heartbeats", "commands", "lease")  # no config-commands given
    supervisor = Supervisor(factories.tasks, lambda: wanted_tasks(Ha(Role("master"))))
    await supervisor.reconcile()
    assert supervisor.running == {"heartbeats", "commands", "lease"}
    await supervisor.stop()


async def test_retrying_backs_off_after_each_failure_until_the_work_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("broker away")
        return "done"

    assert await retrying("connecting to RabbitMQ", flaky) == "done"
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 s, then 0.2 s
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried == [
        "connecting to RabbitMQ failed, retrying in 0.1s: broker away",
        "connecting to RabbitMQ failed, retrying in 0.2s: broker away",
    ]


async def test_retrying_stops_when_cancelled() -> None:
    async def never() -> None:
        raise OSError("database away")

    task = asyncio.create_task(retrying("loading", never))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@dataclass
class Publisher:
    ready: bool = True
    sent: list[tuple[str, Any]] = field(default_factory=list)

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        self.sent.append((routing_key, body))


@dataclass
class Counts:
    alerts: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def alerted(self, name: AlertName) -> None:
        self.alerts.append(name)

    def message_rejected(self, source: str) -> None:
        self.rejected.append(source)


def _monitor() -> tuple[Monitor, Publisher, Counts]:
    publisher, counts = Publisher(), Counts()
    monitor = Monitor(instance="node-a", publisher=publisher, counts=counts, is_master=lambda: True)
    return monitor, publisher, counts


async def test_refused_commands_are_published_once_while_active_and_all_counted() -> None:
    monitor, publisher, counts = _monitor()
    for i in range(12):
        monitor.alert(AlertName.REJECTED_COMMAND, f"command refused: {i}", {"routing_key": "x"})
    monitor.alert(AlertName.FENCED, "node-a fenced itself", {})  # the marker: published last
    await _until("the fenced alert", lambda: any(k == "alert.fenced" for k, _ in publisher.sent))
    refused = [body for key, body in publisher.sent if key == "alert.rejected-command"]
    assert len(refused) == 1  # the others repeat an active alert
    assert counts.alerts.count(AlertName.REJECTED_COMMAND) == 12
    assert refused[0] | {"at": 0, "raised_at": 0} == {
        "instance": "node-a",
        "at": 0,
        "alert": "rejected-command",
        "state": "active",
        "role": "",
        "raised_at": 0,
        "count": 1,
        "message": "command refused: 0",
        "details": {"routing_key": "x"},
    }


async def test_rejected_messages_alert_once_per_source_and_count_the_ones_held_back() -> None:
    monitor, publisher, counts = _monitor()
    for _ in range(3):
        monitor.rejected("heartbeat", "bad signature")
    monitor.rejected("event", "bad signature")
    await _until("two alerts", lambda: len(publisher.sent) == 2)
    assert [body["details"] for _, body in publisher.sent] == [
        {"source": "heartbeat", "reason": "bad signature", "count": 1},
        {"source": "event", "reason": "bad signature", "count": 1},
    ]
    assert counts.rejected == ["heartbeat"] * 3 + ["event"]


def test_an_alert_name_nobody_documented_is_refused() -> None:
    monitor, _, _ = _monitor()
    with pytest.raises(ValueError):
        monitor.alert("made-up", "no such alert", {})  # type: ignore[arg-type]


async def test_a_stop_waits_a_bounded_time_for_a_task_that_does_not_end_and_names_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task stuck in its cleanup (one e2e stop waited 20 s and more) must not hold the
    instance's stop: it is named, with where it waits, and left behind."""
    monkeypatch.setattr(supervisor_module, "STOP_WITHIN", 0.2)
    release = asyncio.Event()

    async def stubborn(first: bool) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # a cleanup that does not end on its own

    factories = Factories("heartbeats", "commands", "lease")
    factories.tasks["commands"] = stubborn
    supervisor = Supervisor(factories.tasks, lambda: wanted_tasks(Ha(Role("master"))))
    await supervisor.reconcile()
    await asyncio.sleep(0)
    await supervisor.stop()
    assert "did not end 0.2 s after its cancel" in caplog.text and "stubborn" in caplog.text
    release.set()
