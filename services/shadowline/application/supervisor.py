"""Starts and stops the broker-facing work to match the instance's role.

The supervisor knows role tasks by name only: the composition root hands it one factory per
name, and `wanted_tasks` says which names run in which role. A role change reconciles the two.
Each task retries on its own (`retrying`, with backoff) when the broker, the peer or the
database is away, and never crash-loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from shadowline.domain.errors import ShadowlineError
from shadowline.domain.roles import FenceReason

log = logging.getLogger(__name__)

STOP_WITHIN = 5.0  # seconds a stop waits for its cancelled tasks to end

T = TypeVar("T")

# A role task: called with `first=True` when it starts with the process rather than after a
# role change (the lease watcher then checks for a newer epoch before the master writes).
RoleTask = Callable[[bool], Awaitable[None]]
EXPECTED = (ShadowlineError, OSError, ConnectionError, TimeoutError, RuntimeError)


def _log_retry(name: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        if isinstance(error, EXPECTED):
            log.warning("%s failed, retrying in %.1fs: %s", name, delay, error)
        else:  # a bug more likely than an outage: keep the traceback
            log.error(
                "%s failed unexpectedly, retrying in %.1fs: %s", name, delay, error, exc_info=error
            )

    return before_sleep


async def retrying(name: str, work: Callable[[], Awaitable[T]], *, limit: float = 5.0) -> T:
    """Run `work` until it succeeds, backing off 0.1 s, 0.2 s, ... up to `limit` after each
    failure; cancellation stops it (CancelledError is no Exception, so it is not retried)."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.1, max=limit), before_sleep=_log_retry(name)
    ):
        with attempt:
            return await work()
    raise AssertionError("unreachable: retried forever")  # pragma: no cover


class RoleView(Protocol):
    """What deciding the tasks reads of the HA service (application.ha.HaService)."""

    @property
    def record(self) -> Any: ...

    @property
    def role(self) -> Any: ...


def wanted_tasks(ha: RoleView) -> set[str]:
    """The role tasks the instance's role calls for now."""
    record, role = ha.record, ha.role.role
    wanted: set[str] = set()
    if role != "standalone":
        wanted |= {"heartbeats", "commands"}
    if role == "master":
        # Only a master takes config commands: a standalone instance may be a shadow that has
        # not joined yet, and what it applied would be replaced by its master's image (and the
        # reply a lie).
        wanted |= {"lease", "config-commands"}
        # A master fenced at start may be about to quarantine what it holds: publish nothing
        # until it knows no newer epoch exists.
        checking = ha.role.fence is FenceReason.STARTING
        if record is not None and record.shadow_state == "confirmed" and not checking:
            wanted |= {"relay", "peer-watch"}
    if role == "shadow":
        wanted.add("replica")
    return wanted


class Supervisor:
    def __init__(
        self,
        tasks: Mapping[str, RoleTask],
        wanted: Callable[[], set[str]],
        changes: RoleChanges | None = None,
    ) -> None:
        if changes is not None:
            changes.listen(self.changed)
        self._tasks = dict(tasks)
        self._wanted = wanted
        self._running: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._reconciling = asyncio.Lock()

    @property
    def running(self) -> set[str]:
        return set(self._running)

    async def changed(self) -> None:
        """The role changed: reconcile in a task of its own, since the caller may be one of the
        tasks that the change stops (a lease watcher that found a newer master)."""
        task = asyncio.create_task(self._reconcile_locked())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if asyncio.current_task() not in self._running.values():
            await asyncio.shield(task)

    async def _reconcile_locked(self) -> None:
        async with self._reconciling:
            await self.reconcile()

    async def reconcile(self) -> None:
        # A task the role wants but nobody gave a factory for does not run (a test's partial
        # wiring); the names are the same set either way.
        wanted = self._wanted() & self._tasks.keys()
        for name in list(self._running):
            if name not in wanted:
                task = self._running.pop(name)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.info("stopped %s", name)
        first = not self._started
        for name in wanted - self._running.keys():
            self._running[name] = asyncio.ensure_future(self._tasks[name](first))
            log.info("started %s", name)
        self._started = True

    async def stop(self) -> None:
        """Cancel every task; a stop never waits more than STOP_WITHIN s for them (one that
        does not end is named in the log, with where it waits, and left behind)."""
        tasks = [*self._running.values(), *self._background]
        for task in tasks:
            task.cancel()
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=STOP_WITHIN)
            for task in left:
                log.error("task %s did not end %g s after its cancel: %s", task.get_name(),
                          STOP_WITHIN, awaiting(task))  # fmt: skip
        self._running.clear()


class RoleChanges:
    """The signal HaService fires after each role change; the supervisor listens to it. It
    exists before either of them, so neither needs the other to be built first."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], Awaitable[None]]] = []

    def listen(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def fire(self) -> None:
        for listener in self._listeners:
            await listener()


class Running(Generic[T]):
    """The object a role task works with while it runs (the shadow's replicator), for others
    to read (status, probes, a promotion draining it); None when the task is not running."""

    def __init__(self) -> None:
        self._current: T | None = None

    @property
    def current(self) -> T | None:
        return self._current

    @contextlib.contextmanager
    def holding(self, value: T) -> Iterator[T]:
        self._current = value
        try:
            yield value
        finally:
            self._current = None


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task waits: its chain of awaited coroutines, outermost first (a suspended
    task's own stack names only its outermost frame)."""
    where: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(where) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " <- ".join(where) or repr(task)
