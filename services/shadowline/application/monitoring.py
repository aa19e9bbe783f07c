"""What an instance says on the monitoring exchange: alerts, rejected inputs, config.changed.

Everything here is best effort and never blocks the work: messages go out from background
tasks, and a broker that is away costs a debug line (the warning of an alert is logged anyway).
Alerts have a state (domain.alerting.AlertBoard): `alert.<name>` goes out once when an alert
becomes active and once when it resolves; repeats in between are logged and counted only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shadowline.application.ports.monitoring import MonitoringCounts, MonitoringPublisher
from shadowline.domain import alerting
from shadowline.domain.alerting import Alert, AlertBoard, AlertName, Episode
from shadowline.domain.events import Event, format_time
from shadowline.domain.roles import RoleState

log = logging.getLogger(__name__)

CHANGES_EVERY = 0.25  # seconds between config.changed summaries
CHANGES_LISTED = 100  # items named in one config.changed summary; the count covers the rest


class Monitor:
    def __init__(
        self,
        *,
        instance: str,
        publisher: MonitoringPublisher,
        counts: MonitoringCounts,
        is_master: Callable[[], bool],
        role: Callable[[], str] = lambda: "",
        board: AlertBoard | None = None,
    ) -> None:
        self._instance = instance
        self._publisher = publisher
        self._counts = counts
        self._is_master = is_master
        self._role = role  # as /health shows it (a fenced master is `fenced`)
        self.board = board or AlertBoard()
        self._expiry: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._changes: list[Event] = []
        self._rejections = alerting.rejections()
        self._refusals = alerting.refusals()

    def alert(self, name: AlertName, message: str, details: dict[str, Any], key: str = "") -> None:
        """Log an alert and, unless it is active already (for `key`: what it is about), publish
        it on monitoring as alert.<name> (best effort). Refused commands come from anyone who
        may publish: past a burst they are not even logged, only counted."""
        name = AlertName(name)  # typed so, and checked: an undocumented name fails loudly
        self._counts.alerted(name)
        refused = name is AlertName.REJECTED_COMMAND
        if refused and self._refusals.admit(name, time.monotonic()) is None:
            return
        now, tick = time.time(), time.monotonic()
        episode = self.board.raised(name, message, self._role(), now, tick, key)
        if episode is None:
            log.warning("ALERT %s (again, still active): %s %s", name, message, details or "")
            self._schedule_expiry()
            return
        log.warning("ALERT %s: %s %s", name, message, details or "")
        self.publish(f"alert.{name}", _body(episode, message, details))
        self._schedule_expiry()

    def resolve(self, name: AlertName, sentence: str) -> None:
        """A condition's alert cleared: publish it resolved, if it was active."""
        done = self.board.resolve(AlertName(name), sentence, time.time())
        if done is not None:
            self._resolved(done)

    def role_changed(self, state: RoleState) -> None:
        """CurrentRole's watcher: `fenced` resolves once the master is unfenced or the instance
        takes another role (a rejoin as shadow)."""
        if state.shown != "fenced" and self.board.active(AlertName.FENCED):
            self.resolve(
                AlertName.FENCED,
                f"{self._instance} is no longer fenced: {state.shown} in epoch {state.epoch}",
            )

    def _resolved(self, done: Episode) -> None:
        log.warning("RESOLVED %s: %s", done.name, done.resolution)
        self.publish(f"alert.{done.name}", _body(done, done.resolution or "resolved", {}))

    def _schedule_expiry(self) -> None:
        """Wake when the next event's alert may resolve (it has not recurred for the quiet
        window); a repeat meanwhile moves it later, and the wake-up then looks again."""
        due = self.board.next_expiry()
        if due is None or self._expiry is not None:
            return
        delay = max(0.0, due - time.monotonic())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        for done in self.board.expire(time.time(), time.monotonic()):
            self._resolved(done)
        self._schedule_expiry()

    def alerts(self) -> list[dict[str, Any]]:
        """GET /alerts: active alerts first, then the recently resolved (DESIGN.md's fields)."""
        return [
            {
                "name": e.name,
                "state": e.state,
                "raised_at": _when(e.raised_at),
                "resolved_at": None if e.resolved_at is None else _when(e.resolved_at),
                "instance": self._instance,
                "role": e.role,
                "message": e.message,
            }
            for e in self.board.listing()
        ]

    def raise_alert(self, found: Alert, key: str = "") -> None:
        """Raise an alert a rule of domain.alerting built."""
        self.alert(found.name, found.message, dict(found.details), key)

    def rejected(self, source: str, reason: str) -> None:
        """An input failed authentication: count it, and alert (throttled per source)."""
        self._counts.message_rejected(source)
        log.debug("rejected %s: %s", source, reason)
        count = self._rejections.admit(source, time.monotonic())
        if count is not None:
            self.raise_alert(alerting.rejected_message(source, reason, count), key=source)

    def publish(self, routing_key: str, body: dict[str, Any]) -> None:
        """Publish on monitoring in the background; monitoring never blocks the work."""
        doc = {"instance": self._instance, "at": time.time(), **body}
        task = asyncio.create_task(self._publish(routing_key, doc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(self, routing_key: str, body: dict[str, Any]) -> None:
        try:
            if self._publisher.ready:
                await self._publisher.publish_monitoring(routing_key, body)
        except Exception as error:  # best effort: the log line stays
            log.debug("%s not published: %s", routing_key, error)

    def config_changed(self, events: Sequence[Event]) -> None:
        """Collect committed client writes; a summary goes out at most every CHANGES_EVERY s
        (one message per group-commit batch would cost the master more than the writes)."""
        if not self._is_master():
            return
        if not self._changes:
            asyncio.get_running_loop().call_later(CHANGES_EVERY, self._flush_changes)
        self._changes.extend(events)

    def _flush_changes(self) -> None:
        batch, self._changes = self._changes, []
        summary = changes_summary(batch)
        if summary is not None:
            self.publish("config.changed", summary)

    async def stop(self) -> None:
        """Drop what is still being published (shutting down: nobody waits for monitoring)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _body(episode: Episode, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """alert.<name> (schemas/monitoring/alert.json): raised, or resolved with why."""
    return {
        "alert": episode.name,
        "state": episode.state,
        "role": episode.role,
        "raised_at": episode.raised_at,
        "count": episode.count,
        "message": message,
        "details": details,
    }


def _when(moment: float) -> str:
    return format_time(datetime.fromtimestamp(moment, UTC))


def changes_summary(batch: Sequence[Event]) -> dict[str, Any] | None:
    """The body of config.changed for committed events, or None when no client write is in
    them (HA events such as ShadowConfirmed change no configuration)."""
    events = [e for e in batch if e.kind is not None]
    if not events:
        return None
    changes = [
        {"kind": e.kind, "name": e.name, "version": e.version, "type": e.type,
         "actor": e.metadata.get("actor")}
        for e in events[:CHANGES_LISTED]
    ]  # fmt: skip
    return {
        "epoch": batch[-1].epoch,
        "from_position": batch[0].position,
        "to_position": batch[-1].position,
        "count": len(events),
        "changes": changes,
    }


class Uncounted:
    """Counters that count nothing, for an application object built without metrics (tests)."""

    def alerted(self, name: AlertName) -> None:
        pass

    def message_rejected(self, source: str) -> None:
        pass

    def fenced(self, reason: str) -> None:
        pass

    def rejected(self, error: Exception) -> None:
        pass

    def promoted(self, command: dict[str, Any]) -> None:
        pass

    def rejoined(self, quarantined: int) -> None:
        pass
