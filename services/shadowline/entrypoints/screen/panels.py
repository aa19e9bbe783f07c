"""What the HA screen shows beyond the instance's own status: the role changes read from the
durable log, the watchdogs heard on monitoring, the alerts' board and a handover under way.

The role changes come from the event store (the HA events every instance records), so a
restarted instance still shows the failover story; they are read incrementally (only what was
committed since the last look), because the live part of the screen asks every second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from shadowline.application.ha import HaService
from shadowline.application.service import ConfigService
from shadowline.domain.errors import Unavailable
from shadowline.domain.events import Event
from shadowline.domain.records import EventFilter
from shadowline.domain.roles import FenceReason, RoleState
from shadowline.entrypoints.deps import AlertLog, LogReads, Monitoring
from shadowline.entrypoints.screen.session import ScreenUser

HA_TYPES = ("HaEnabled", "ShadowConfirmed", "ShadowRemoved", "MasterPromoted", "SigningStarted")
ROLE_CHANGES_SHOWN = 20
PAGE = 1000
RECENT_HEARTBEATS = 10
# A switch of roles fences the master, then makes it the new master's shadow: until that master
# has contacted and confirmed it, it has caught up and its own heartbeats say `shadow`, what the
# screen shows (fenced, "Last contact: never", a lag) is the handover settling.
HANDOVER_SETTLES = 60.0  # seconds after a switch of roles begun on this screen
HANDOVER = frozenset(
    {FenceReason.HANDING_OVER, FenceReason.HANDOVER_UNKNOWN, FenceReason.REJOINING}
)


class RoleLog:
    """The last HA events of this instance's log, newest first."""

    def __init__(self, service: ConfigService) -> None:
        self._service = service  # its writer's position is the committed (applied) head
        self._scanned = 0  # every HA event at or below this position has been read
        self._events: deque[Event] = deque(maxlen=ROLE_CHANGES_SHOWN)
        self._lock = asyncio.Lock()
        self.unavailable: str | None = None  # why the last read failed (the database away)

    async def recent(self) -> list[Event]:
        async with self._lock:
            try:
                await self._catch_up()
                self.unavailable = None
            except Unavailable as error:  # shown as of the last read, with the reason
                self.unavailable = str(error)
        return list(reversed(self._events))

    async def _catch_up(self) -> None:
        head = self._service.writer.position
        if head < self._scanned:  # a rejoin moved later events to quarantine: read anew
            self._scanned = 0
            self._events.clear()
        where = EventFilter(types=HA_TYPES)
        while True:
            batch = await self._service.store.read(self._scanned, PAGE, where)
            self._events.extend(batch)
            if len(batch) < PAGE:
                self._scanned = max(head, batch[-1].position if batch else 0, self._scanned)
                return
            self._scanned = batch[-1].position


# Over 50 lines: one dict naming everything the status templates read, in one place.
async def status_view(
    ha: HaService,
    service: ConfigService,
    feed: Monitoring | None,
    user: ScreenUser,
    alerts: AlertLog | None,
    role_log: RoleLog,
    switched_at: float | None = None,
) -> dict[str, Any]:
    status = await ha.status()
    shadow = status.get("shadow")
    now = datetime.now(UTC)
    if shadow is not None:
        shadow["lag_seconds"] = await _lag_seconds(service, shadow, now)
    board = alerts.board.listing() if alerts is not None else []
    latest = feed.latest_heartbeats() if feed else []
    own = [b.body.get("role") for b in latest if b.body.get("instance") == status["instance"]]
    return {
        "cluster": ha.settings.cluster,
        "handover": handover(ha.role.state, status, _ago(switched_at), own[0] if own else None),
        "alerts_active": [e for e in board if e.state == "active"],
        "alerts_resolved": [e for e in board if e.state == "resolved"],
        "role_changes": [(e, describe(e)) for e in await role_log.recent()],
        "role_log_unavailable": role_log.unavailable,
        "watchdogs": watchdogs(feed, now),
        "status": status,
        "user": user,
        "can_act": user.may("admin"),
        "pending": shadow is not None and shadow["state"] == "pending",
        "feed": feed,
        "latest": latest,
        "heartbeats": feed.recent_heartbeats(RECENT_HEARTBEATS) if feed else [],
        "events": feed.recent_events() if feed else [],
        "now": now,
    }


async def _lag_seconds(
    service: ConfigService, shadow: dict[str, Any], now: datetime
) -> float | None:
    """How old the oldest event is that the shadow has not applied (0 when it has them all):
    the master's status counts the lag in events only, an operator also wants it in time."""
    if shadow["state"] == "pending":
        return None
    if not shadow["lag_events"]:
        return 0.0
    try:
        oldest = await service.store.read(shadow["position"], 1)
    except Unavailable:  # the status is worth showing without it when the database is away
        return None
    return max(0.0, (now - oldest[0].recorded_at).total_seconds()) if oldest else None


QUARANTINE_SHOWN = 20


async def quarantined(store: LogReads) -> dict[str, Any]:
    """The quarantined events (the first QUARANTINE_SHOWN; `shadowline ha quarantine` lists
    all), or why they cannot be read now."""
    try:
        rows = await store.quarantined()
    except Unavailable as error:
        return {"count": None, "rows": [], "error": str(error)}
    return {"count": len(rows), "rows": rows[:QUARANTINE_SHOWN], "error": None}


def _ago(moment: float | None) -> float | None:
    return None if moment is None else time.monotonic() - moment


def describe(event: Event) -> str:
    """One line for people about an HA event."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.type == "MasterPromoted":  # older events do not name the new master
        master = f"{data['master']} became master" if data.get("master") else "new master"
        was = data.get("previous_master") or "none"
        why = f" ({data['reason']})" if data.get("reason") else ""
        return (
            f"{master} in epoch {data.get('epoch')}, taking over from {was} at fork position "
            f"{data.get('fork_position')}{why}"
        )
    if event.type == "HaEnabled":
        return f"HA enabled on {data.get('master')}"
    if event.type == "ShadowConfirmed":
        return f"shadow {data.get('shadow')} confirmed"
    if event.type == "ShadowRemoved":
        return f"shadow {data.get('shadow')} removed"
    return "events are signed from here on" if event.type == "SigningStarted" else event.type


def handover(
    state: RoleState,
    status: dict[str, Any],
    switched_ago: float | None = None,
    own_beat: str | None = None,
) -> str | None:
    """A sentence while a switch of roles (or a rejoin) is under way, else None. After a switch
    started here less than HANDOVER_SETTLES s ago, the old master that is a shadow now is still
    handing over until its new master has contacted and confirmed it, it has caught up, and
    its last heartbeat the screen shows (`own_beat`, its role; None: none shown) says so too.
    A shadow merely restarted is not handing over."""
    if state.fence in HANDOVER:
        return state.detail or "handing over to the shadow"
    master = status.get("master")
    if switched_ago is None or switched_ago > HANDOVER_SETTLES:
        return None
    if master is None or status.get("role") != "shadow":
        return None
    becoming = f"becoming the shadow of {master.get('instance')}"
    behind = (status.get("lag") or {}).get("events")
    if status.get("last_contact_age") is None:
        return f"{becoming}: waiting for its first contact"
    if not status.get("confirmed"):
        return f"{becoming}: waiting for it to confirm this shadow"
    if behind:
        return f"{becoming}: catching up ({behind} events behind)"
    if own_beat is not None and own_beat != status.get("role"):
        return f"{becoming}: announcing its new role in its heartbeats"
    return None


def watchdogs(feed: Monitoring | None, now: datetime) -> list[dict[str, Any]]:
    """The watchdogs heard on monitoring, by name: their last word and how long ago."""
    seen = feed.watchdogs_seen() if feed is not None else []
    rows = []
    for heard in seen:
        body = heard.body
        rows.append(
            {
                "name": body.get("watchdog"),
                "phase": body.get("phase") or heard.routing_key.removeprefix("failover."),
                "maintenance": body.get("maintenance"),
                "master": body.get("master"),
                "heard_ago": (now - heard.received_at).total_seconds(),
                "heard_at": heard.received_at.astimezone(UTC),
            }
        )
    return rows
