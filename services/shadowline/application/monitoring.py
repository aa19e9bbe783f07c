"""What an instance says on the monitoring exchange: alerts, rejected inputs, config.changed.

Everything here is best effort and never blocks the work: messages go out from background
tasks, and a broker that is away costs a debug line (the warning of an alert is logged anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from shadowline.application.ports.monitoring import MonitoringCounts, MonitoringPublisher
from shadowline.domain import alerting
from shadowline.domain.alerting import Alert, AlertName
from shadowline.domain.events import Event

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
    ) -> None:
        self._instance = instance
        self._publisher = publisher
        self._counts = counts
        self._is_master = is_master
        self._background: set[asyncio.Task[None]] = set()
        self._changes: list[Event] = []
        self._rejections = alerting.rejections()
        self._refusals = alerting.refusals()

    def alert(self, name: AlertName, message: str, details: dict[str, Any]) -> None:
        """Log an alert and publish it on monitoring as alert.<name> (best effort). Refused
        commands come from anyone who may publish: past a burst they are only counted."""
        name = AlertName(name)  # typed so, and checked: an undocumented name fails loudly
        self._counts.alerted(name)
        refused = name is AlertName.REJECTED_COMMAND
        if refused and self._refusals.admit(name, time.monotonic()) is None:
            return
        log.warning("ALERT %s: %s %s", name, message, details or "")
        self.publish(f"alert.{name}", {"alert": name, "message": message, "details": details})

    def raise_alert(self, found: Alert) -> None:
        """Raise an alert a rule of domain.alerting built."""
        self.alert(found.name, found.message, dict(found.details))

    def rejected(self, source: str, reason: str) -> None:
        """An input failed authentication: count it, and alert (throttled per source)."""
        self._counts.message_rejected(source)
        log.debug("rejected %s: %s", source, reason)
        count = self._rejections.admit(source, time.monotonic())
        if count is not None:
            self.raise_alert(alerting.rejected_message(source, reason, count))

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
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


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
