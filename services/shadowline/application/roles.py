"""The one holder of the instance's current RoleState, with a change signal.

Everything that reads the role (the service, the writer, the supervisor, the entrypoints) reads
it here; everything that changes it sets a new RoleState here, and whoever waits for a change
(`wait_for`) wakes up at once instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from shadowline.domain.roles import FenceReason, Role, RoleState


class CurrentRole:
    def __init__(self, state: RoleState | None = None) -> None:
        self._state = state or RoleState()
        self._changed = asyncio.Condition()
        self._pending: set[asyncio.Task[None]] = set()
        # Called with each new state, at once (monitoring resolves `fenced` when it lifts).
        self.watchers: list[Callable[[RoleState], None]] = []

    @property
    def state(self) -> RoleState:
        return self._state

    def set(self, new: RoleState) -> None:
        """Take `new` as the current state and wake every waiter. Synchronous, so a decision
        takes effect before the caller's next await (a fenced master acknowledges nothing
        more); the waiters are woken from a task, since notifying needs the condition's lock."""
        if new == self._state:
            return
        self._state = new
        for watcher in self.watchers:
            watcher(new)
        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be waiting
            task = asyncio.get_running_loop().create_task(self._notify())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[RoleState], bool],
        timeout: float | None = None,  # noqa: ASYNC109 (a bound, as Condition.wait_for's)
    ) -> bool:
        """Wait (at most `timeout` s) until `predicate` holds of the current state."""
        async with self._changed:
            if predicate(self._state):
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: predicate(self._state))
            return predicate(self._state)

    # -- read-only views, named as RoleState's fields were (readers elsewhere use them) --------

    @property
    def role(self) -> Role:
        return self._state.role

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def master_url(self) -> str | None:
        return self._state.master_url

    @property
    def fence(self) -> FenceReason | None:
        return self._state.fence

    @property
    def fenced(self) -> str | None:
        return self._state.fenced

    @property
    def writable(self) -> bool:
        return self._state.writable

    @property
    def shown(self) -> str:
        return self._state.shown
