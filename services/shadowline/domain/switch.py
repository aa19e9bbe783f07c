"""A scheduled switch of roles (POST /ha/switch-roles with `{"at": ...}`): when it may be due,
what GET /ha shows of it, and how a handover's end reads as its outcome. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shadowline.domain.errors import FieldError, InvalidInput
from shadowline.domain.events import format_time
from shadowline.domain.roles import FenceReason

MAX_AHEAD = timedelta(days=7)
MIN_AHEAD = timedelta(seconds=1)
OPEN = ("scheduled", "running")
# What a handover's end says of the switch: the promote certainly did not land (failed), it
# may have (unknown: kept apart, the shadow may be master now), or it did (done).
DONE, FAILED, UNKNOWN, CANCELLED = "done", "failed", "unknown", "cancelled"
_RELATIVE = re.compile(r"\+(\d{1,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, slots=True)
class ScheduledSwitch:
    id: int
    epoch: int  # the master's epoch when it was taken: it never runs in another
    due_at: datetime
    requested_by: str
    state: str
    reason: str | None
    requested_at: datetime
    finished_at: datetime | None

    @property
    def open(self) -> bool:
        return self.state in OPEN

    def doc(self) -> dict[str, Any]:
        """GET /ha's `scheduled_switch`."""
        return {
            "at": format_time(self.due_at),
            "requested_by": self.requested_by,
            "requested_at": format_time(self.requested_at),
            "state": self.state,
            "reason": self.reason,
            "epoch": self.epoch,
            "finished_at": format_time(self.finished_at) if self.finished_at else None,
        }


def due_time(value: Any, now: datetime) -> datetime:
    """The `at` of a request: an RFC 3339 / ISO-8601 time with its offset, in the future (at
    least a second) and at most 7 days ahead. InvalidInput (422) otherwise."""
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput([FieldError("$.at", "must be an ISO-8601 time with its offset")])
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput([FieldError("$.at", f"not an ISO-8601 time: {value!r}")]) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput([FieldError("$.at", "must carry its offset (Z or +01:00)")])
    if at < now + MIN_AHEAD:
        raise InvalidInput([FieldError("$.at", f"{format_time(at)} is not in the future")])
    if at > now + MAX_AHEAD:
        raise InvalidInput([FieldError("$.at", f"{format_time(at)} is more than 7 days ahead")])
    return at


def parse_when(text: str, now: datetime) -> datetime:
    """The CLI's TIME: `+30s`, `+10m`, `+2h`, `+1d` from now, or an ISO-8601 time (local time
    when it names no offset). ValueError with the reason otherwise."""
    if match := _RELATIVE.fullmatch(text.strip()):
        return now + timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"TIME must be +10m (s, m, h, d) or ISO-8601, not {text!r}") from None
    return at if at.tzinfo is not None else at.astimezone()


def outcome(fence: FenceReason | None) -> str:
    """A handover that raised: unknown while the master stays fenced because its promote may
    have landed, done when it was promoted and only the rejoin is left, failed otherwise."""
    if fence is FenceReason.HANDOVER_UNKNOWN:
        return UNKNOWN
    if fence is FenceReason.REJOINING:
        return DONE
    return FAILED
