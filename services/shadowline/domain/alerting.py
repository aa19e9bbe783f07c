"""Every alert an instance raises, by name, and the rules that decide when some are raised.

`AlertName` holds the names schemas/monitoring/alert.json documents (the routing key is
`alert.<name>`); nothing raises an alert by a bare string. The master's watch of its shadow is
pure functions of (watch, observation, now): `shadow-lost` (a confirmed shadow was not heard of
for the takeover delay) and `lag` (the shadow is more than a limit of seconds behind). Lag in seconds is measured
against the master's own history, not against clocks: the shadow is more than L seconds behind
when its position is still below the position the master had L seconds ago. That holds under a
steady load too, where the shadow is never fully caught up for a moment yet is not lagging.

Every alert has a state (`AlertBoard`): raised once while active (a repeat is counted, not
raised again), then resolved. A condition's alert (CONDITIONS) resolves when the condition
clears, said by the part that sees it clear; an event's alert (the others) resolves once it has
not recurred for a quiet window. The board is pure: both clocks are passed in, the wall clock
for what is shown, the monotonic one for the windows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal


class AlertName(StrEnum):
    """The alerts an instance raises (schemas/monitoring/alert.json describes each)."""

    FENCED = "fenced"
    SYNC_DEGRADED = "sync-degraded"
    DEAD_LETTERED = "dead-lettered"
    REJECTED_COMMAND = "rejected-command"
    DIVERGENCE = "divergence"
    QUARANTINED = "quarantined"
    CORRUPT_SNAPSHOT = "corrupt-snapshot"
    SHADOW_REFUSED = "shadow-refused"
    SHADOW_LOST = "shadow-lost"
    LAG = "lag"
    REJECTED_MESSAGE = "rejected-message"
    DATABASE_UNUSABLE = "database-unusable"
    HOOK_FAILED = "hook-failed"


# Resolved when their condition clears (shadow heard again, caught up, unfenced, sync again).
CONDITIONS = frozenset(
    {
        AlertName.SHADOW_LOST,
        AlertName.LAG,
        AlertName.FENCED,
        AlertName.SYNC_DEGRADED,
        AlertName.DATABASE_UNUSABLE,
    }
)
QUIET_SECONDS = 300.0  # an event's alert resolves after this long without a recurrence
RESOLVED_KEPT = 50  # resolved alerts listed (GET /alerts, the screen), the oldest go first


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert from raised to resolved; `count` occurrences while it was active."""

    name: AlertName
    message: str
    role: str  # of the instance when it raised the alert
    raised_at: float  # UNIX time
    last_tick: float  # monotonic time of the latest occurrence
    count: int = 1
    resolved_at: float | None = None
    resolution: str | None = None  # why it resolved, in one sentence
    key: str = ""  # what it is about, when one name covers several (rejected-message: the source)

    @property
    def state(self) -> Literal["active", "resolved"]:
        return "active" if self.resolved_at is None else "resolved"


class AlertBoard:
    """The active alerts by name (and key), and the last RESOLVED_KEPT resolved ones."""

    def __init__(self, quiet: float = QUIET_SECONDS, kept: int = RESOLVED_KEPT) -> None:
        self.quiet = quiet
        self._active: dict[tuple[AlertName, str], Episode] = {}
        self._resolved: deque[Episode] = deque(maxlen=kept)

    def raised(
        self, name: AlertName, message: str, role: str, now: float, tick: float, key: str = ""
    ) -> Episode | None:
        """The episode an occurrence starts, to announce; None when the alert is active
        already (the repeat is counted and restarts an event's quiet window)."""
        found = self._active.get((name, key))
        if found is not None:
            self._active[name, key] = replace(found, count=found.count + 1, last_tick=tick)
            return None
        self._active[name, key] = Episode(name, message, role, now, tick, key=key)
        return self._active[name, key]

    def resolve(self, name: AlertName, sentence: str, now: float, key: str = "") -> Episode | None:
        """The episode resolved now, to announce; None when the alert was not active."""
        found = self._active.pop((name, key), None)
        if found is None:
            return None
        done = replace(found, resolved_at=now, resolution=sentence)
        self._resolved.append(done)
        return done

    def expire(self, now: float, tick: float) -> list[Episode]:
        """Resolve the events' alerts that have not recurred for the quiet window."""
        due = [
            e for e in self._active.values()
            if e.name not in CONDITIONS and tick - e.last_tick >= self.quiet
        ]  # fmt: skip
        sentence = "not again for {quiet:g} s ({count} in all)"
        return [
            done
            for e in due
            if (
                done := self.resolve(
                    e.name, sentence.format(quiet=self.quiet, count=e.count), now, e.key
                )
            )
        ]

    def next_expiry(self) -> float | None:
        """The monotonic time at which the next event's alert resolves if it does not recur."""
        ticks = [e.last_tick for e in self._active.values() if e.name not in CONDITIONS]
        return min(ticks) + self.quiet if ticks else None

    def active(self, name: AlertName, key: str = "") -> bool:
        return (name, key) in self._active

    def listing(self) -> list[Episode]:
        """Active alerts first, then resolved ones; the newest first in each."""
        active = sorted(self._active.values(), key=lambda e: e.raised_at, reverse=True)
        return [*active, *reversed(self._resolved)]


@dataclass(frozen=True)
class Observation:
    """What the master sees of itself and its confirmed shadow at one moment."""

    master_position: int
    shadow: str
    shadow_state: str  # as domain.ha.shadow_state: pending, syncing, connected, lost
    shadow_position: int


@dataclass(frozen=True)
class Alert:
    name: AlertName
    message: str
    details: dict[str, object]


@dataclass(frozen=True)
class Cleared:
    """A condition's alert to resolve, and why."""

    name: AlertName
    sentence: str


@dataclass(frozen=True)
class Watch:
    """The alerting memory: what was already said, and recent (time, master position) pairs."""

    lost: bool = False
    lagging: bool = False
    samples: tuple[tuple[float, int], ...] = field(default=())


def position_at(samples: tuple[tuple[float, int], ...], moment: float) -> int | None:
    """The master's position at `moment` (the latest sample not after it), if that is known."""
    found = None
    for at, position in samples:
        if at > moment:
            break
        found = position
    return found


def observe(
    watch: Watch, seen: Observation, now: float, *, lag_limit: float
) -> tuple[Watch, list[Alert], list[Cleared]]:
    """The next watch, the alerts to raise (once per episode) and the ones that cleared: the
    shadow heard again, caught up. While the shadow is lost, lag is neither raised nor cleared
    (nothing is known of its position)."""
    samples = (*watch.samples, (now, seen.master_position))
    # Keep one sample at or before now - lag_limit, so position_at() can answer for that moment.
    while len(samples) > 1 and samples[1][0] <= now - lag_limit:
        samples = samples[1:]
    alerts: list[Alert] = []
    lost = seen.shadow_state == "lost"
    if lost and not watch.lost:
        alerts.append(
            Alert(
                AlertName.SHADOW_LOST,
                f"shadow {seen.shadow} has not been heard of for longer than the takeover delay; "
                "this master is running without a standby",
                {"shadow": seen.shadow, "position": seen.shadow_position},
            )
        )
    then = position_at(samples, now - lag_limit)
    behind = then is not None and seen.shadow_position < then and not lost
    cleared = _cleared(watch, seen, lost=lost, behind=behind, lag_limit=lag_limit)
    if behind and not watch.lagging:
        alerts.append(
            Alert(
                AlertName.LAG,
                f"shadow {seen.shadow} is more than {lag_limit:g} s behind: at position "
                f"{seen.shadow_position}, while the master was at {then} {lag_limit:g} s ago "
                f"and is at {seen.master_position} now",
                {
                    "shadow": seen.shadow,
                    "position": seen.shadow_position,
                    "master_position": seen.master_position,
                    "lag_events": max(0, seen.master_position - seen.shadow_position),
                    "limit_seconds": lag_limit,
                },
            )
        )
    lagging = watch.lagging if lost else behind
    return Watch(lost=lost, lagging=lagging, samples=samples), alerts, cleared


def _cleared(
    watch: Watch, seen: Observation, *, lost: bool, behind: bool, lag_limit: float
) -> list[Cleared]:
    cleared: list[Cleared] = []
    if watch.lost and not lost:
        cleared.append(Cleared(AlertName.SHADOW_LOST, f"shadow {seen.shadow} is heard again"))
    if watch.lagging and not behind and not lost:
        cleared.append(
            Cleared(
                AlertName.LAG,
                f"shadow {seen.shadow} is less than {lag_limit:g} s behind again, at position "
                f"{seen.shadow_position} of {seen.master_position}",
            )
        )
    return cleared


@dataclass(slots=True)
class Throttle:
    """At most `burst` alerts per key every `every` seconds; the ones held back are counted and
    reported with the next (an attacker flooding forged messages must not flood monitoring)."""

    every: float = 10.0
    burst: int = 1
    last: dict[str, float] = field(default_factory=dict)  # when the key's window began
    sent: dict[str, int] = field(default_factory=dict)  # alerts raised in that window
    held: dict[str, int] = field(default_factory=dict)  # occurrences since the last alert

    def admit(self, key: str, now: float) -> int | None:
        """How many occurrences the alert to raise now covers, or None to hold this one back."""
        if key not in self.last or now - self.last[key] >= self.every:
            self.last[key], self.sent[key] = now, 0
        count = self.held.get(key, 0) + 1
        if self.sent[key] >= self.burst:
            self.held[key] = count
            return None
        self.sent[key], self.held[key] = self.sent[key] + 1, 0
        return count


def rejected_message(source: str, reason: str, count: int) -> Alert:
    """An input that failed authentication, covering `count` occurrences (see `refusals`)."""
    details: dict[str, object] = {"source": source, "reason": reason, "count": count}
    return Alert(AlertName.REJECTED_MESSAGE, f"{source} rejected: {reason}", details)


def rejected_command(reason: object, routing_key: str) -> Alert:
    """A promote command (or anything else on the command queue) that was not acted on."""
    details: dict[str, object] = {"routing_key": routing_key}
    return Alert(AlertName.REJECTED_COMMAND, f"command refused: {reason}", details)


def rejections() -> Throttle:
    """Unauthenticated inputs: one alert per source every 10 s, counting the ones left out."""
    return Throttle(every=10.0, burst=1)


def refusals() -> Throttle:
    """Refused commands come from anyone who may publish: at most 10 alerts per 10 s; past the
    burst they are only counted (in shadowline_alerts_total)."""
    return Throttle(every=10.0, burst=10)
