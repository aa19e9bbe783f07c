"""Scheduled switches of roles, on the master: taken, shown and cancelled by people (POST and
DELETE /ha/switch-roles), run when due as the same lossless handover as an immediate switch
(application.handover), with their outcome kept in the master's own database.

The schedule belongs to the master and the epoch it was taken in: any role change cancels one
not started yet (in the role change's transaction, adapters.ha_repo), and one found due in
another epoch or role is cancelled, never run. A switch's row is marked `running` before the
handover starts, so a process stopped in the middle leaves `unknown`, not a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shadowline.domain import switch as rules
from shadowline.domain.errors import Conflict, Unavailable
from shadowline.domain.roles import Role
from shadowline.domain.switch import ScheduledSwitch

if TYPE_CHECKING:
    from shadowline.application.failover import Failover

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY = 1.0  # seconds between attempts while the database is unavailable

Record = Callable[[str, dict[str, Any], str], Awaitable[None]]  # an audited HA event


class Schedules(Protocol):
    async def latest(self) -> ScheduledSwitch | None: ...
    async def take(self, epoch: int, due_at: datetime, actor: str) -> ScheduledSwitch: ...
    async def cancel(self, reason: str) -> ScheduledSwitch | None: ...
    async def claim(self, id_: int, epoch: int) -> ScheduledSwitch | None: ...
    async def finish(self, id_: int, state: str, reason: str | None) -> None: ...
    async def interrupted(self) -> ScheduledSwitch | None: ...


class SwitchScheduler:
    def __init__(
        self,
        failover: Failover,
        schedules: Schedules,
        record: Record,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._failover = failover
        self._schedules = schedules
        self._record = record
        self._clock = clock
        self._current: ScheduledSwitch | None = None  # the latest, as GET /ha shows it
        self._changed = asyncio.Event()

    def view(self) -> dict[str, Any] | None:
        """GET /ha's `scheduled_switch`: the latest schedule and its state, or null."""
        return self._current.doc() if self._current is not None else None

    async def schedule(self, at: Any, actor: str) -> dict[str, Any]:
        role = self._failover.role
        if role.role != Role.MASTER or role.fence is not None:
            raise Conflict(
                f"a switch of roles is scheduled on a writable master; this is {role.shown}"
            )
        record = self._failover.ha.record
        if record is None or not record.shadow_instance:
            raise Conflict("this master has no shadow to switch roles with")
        due = rules.due_time(at, self._clock())
        taken = await self._schedules.take(role.epoch, due, actor)
        self._set(taken)
        try:
            await self._record(
                "SwitchScheduled", {"at": taken.doc()["at"], "epoch": taken.epoch}, actor
            )
        except BaseException:
            self._set(await self._schedules.cancel("cancelled: its audit event was not written"))
            raise
        log.info("switch of roles scheduled for %s by %s", taken.doc()["at"], actor)
        return taken.doc()

    async def cancel(self, actor: str) -> dict[str, Any]:
        cancelled = await self._schedules.cancel(f"cancelled by {actor}")
        if cancelled is None:
            latest = await self._schedules.latest()
            if latest is not None and latest.state == "running":
                raise Conflict("the scheduled switch of roles is running: it cannot be cancelled")
            raise Conflict("no switch of roles is scheduled")
        self._set(cancelled)
        await self._record("SwitchCancelled", {"at": cancelled.doc()["at"]}, actor)
        log.info("scheduled switch of roles (%s) cancelled by %s", cancelled.doc()["at"], actor)
        return cancelled.doc()

    async def run(self) -> None:
        """Forever: close what a stopped process left running, then run each schedule when due."""
        interrupted = await self._retrying(self._schedules.interrupted)
        if interrupted is not None:
            log.warning("scheduled switch of roles ended unknown: %s", interrupted.reason)
        self._set(await self._retrying(self._schedules.latest))
        while True:
            self._changed.clear()  # before reading: a change from here on ends the wait below
            current = self._current
            if current is None or current.state != "scheduled":
                await self._changed.wait()
            elif (delay := (current.due_at - self._clock()).total_seconds()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(delay, 60.0))
            else:
                await self._retrying(partial(self._due, current))

    async def _due(self, due: ScheduledSwitch) -> None:
        role = self._failover.role
        if role.role != Role.MASTER or role.epoch != due.epoch:
            reason = f"cancelled: this instance is {role.shown} in epoch {role.epoch}, not the master of epoch {due.epoch}"
            self._set(await self._schedules.cancel(reason) or await self._schedules.latest())
            log.warning("scheduled switch of roles %s", reason)
            return
        claimed = await self._schedules.claim(due.id, due.epoch)
        if claimed is None:  # cancelled meanwhile
            self._set(await self._schedules.latest())
            return
        self._set(claimed)
        state, reason = await self._switch(claimed)
        await self._retrying(lambda: self._schedules.finish(claimed.id, state, reason))
        self._set(await self._retrying(self._schedules.latest))

    async def _switch(self, due: ScheduledSwitch) -> tuple[str, str]:
        log.info("scheduled switch of roles (%s, by %s) is due", due.doc()["at"], due.requested_by)
        try:
            result = await self._failover.switch_roles(f"{due.requested_by} (scheduled)")
        except (
            Exception
        ) as error:  # every end is recorded: failed, or unknown when it may have landed
            state = rules.outcome(self._failover.role.fence)
            log.warning("scheduled switch of roles %s: %s", state, error)
            return state, f"{error.__class__.__name__}: {error}"
        return rules.DONE, f"{result['new_master']} is master in epoch {result['epoch']}"

    def _set(self, switch: ScheduledSwitch | None) -> None:
        self._current = switch
        self._changed.set()

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                return await step()
            except Unavailable as error:
                log.warning("switch schedule: %s; retrying", error)
                await asyncio.sleep(RETRY)
