"""The single writer of a store, with group commit.

Requests queue up while a transaction is in flight; the next transaction takes all of them (up
to `batch_max`). Each command is decided on its own against the versions as they stand after
the commands before it in the batch, so a 409 for one request never fails its neighbours. Only
the commands that pass are appended, in one transaction; their futures resolve after COMMIT, so
nothing is acknowledged before it is durable.

On a shadow the same writer appends the events that replication hands it, after checking that
they extend the local log exactly (domain.replication): one writer per store, whatever the role.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shadowline.application.ports.store import EventStore
from shadowline.application.writer_events import event_for, recorded_now
from shadowline.application.writer_guard import StoreGuard, fail_all
from shadowline.domain import trust
from shadowline.domain.commands import Command, ItemVersion
from shadowline.domain.errors import NotWritable, ShadowlineError, Unavailable
from shadowline.domain.events import Event, canonical, chain_of, sealed
from shadowline.domain.replication import check_replicated

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    """One unit of work: a client command (group-committed), or an exclusive job."""

    future: asyncio.Future[Any]
    command: Command | None = None
    job: Callable[[], Awaitable[Any]] | None = None
    # A client's write: the epoch it was accepted in while the instance was writable.
    epoch: int | None = None
    enqueued: float = field(default_factory=time.perf_counter)


BatchObserver = Callable[[int, float], None]


class Writer:
    def __init__(
        self,
        store: EventStore,
        *,
        epoch: Callable[[], int],
        writable: Callable[[], bool] = lambda: True,
        batch_max: int = 1000,
        on_batch: BatchObserver | None = None,
        secret: str | None = None,
        cluster: str = "",
        on_commit: Sequence[Callable[[list[Event]], None]] = (),
        guard: StoreGuard | None = None,
    ) -> None:
        self._store = store
        self._guard = guard or StoreGuard()
        self._secret = secret  # signs every event it writes (domain.trust.event_signature)
        self._cluster = cluster
        self._epoch = epoch
        self._writable = writable
        self._batch_max = batch_max
        self._on_batch = on_batch
        self.on_commit = list(on_commit)  # after each client batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._versions: dict[tuple[str, str], ItemVersion] = {}
        self._position = 0
        self._chain = b""
        self._head_epoch = 0
        self._last_recorded: datetime | None = None
        self._closed = False
        self.committed = asyncio.Condition()

    @property
    def position(self) -> int:
        return self._position

    @property
    def chain(self) -> bytes:
        return self._chain

    @property
    def head_epoch(self) -> int:
        return self._head_epoch

    async def load(self) -> None:
        """Read the head and every item's version; the writer trusts no other memory."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Unavailable),
            wait=wait_exponential(multiplier=0.1, max=2),
            stop=stop_after_delay(30),
            reraise=True,
        ):
            with attempt:
                await self._read_head()

    async def _read_head(self) -> None:
        head = await self._store.head()
        self._versions = await self._store.versions()
        self._position, self._chain = head.position, head.chain
        self._head_epoch, self._last_recorded = head.epoch, head.recorded_at

    # -- intake ------------------------------------------------------------------------------

    def _enqueue(self, **work: Any) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("the instance is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(future, **work))
        return future

    async def submit(self, command: Command, *, epoch: int | None = None) -> tuple[Event, bool]:
        """Append one command's event; returns (event, created) once it is durable.

        `epoch`: a client's write, accepted while the instance was writable in that epoch. If
        the role changed while it waited its turn (the master fenced, rejoined as shadow or
        promoted anew), it is refused with NotWritable, never appended under the new role.
        """
        result: tuple[Event, bool] = await self._enqueue(command=command, epoch=epoch)
        return result

    async def replicate(self, events: Sequence[Event]) -> None:
        """Append events from the master, exactly as they are (positions, ids, chain)."""
        await self._enqueue(job=lambda: self._append_replicated(events))

    async def exclusive(self, job: Callable[[], Awaitable[Any]], *, reload: bool = True) -> Any:
        """Run `job` after everything queued before it and with no append in flight (role
        changes, snapshot installs); then re-read the store, unless the job changed nothing
        the writer keeps in memory (`reload=False`)."""

        async def run_and_reload() -> Any:
            try:
                return await job()
            finally:
                if reload:
                    await self.reload()

        return await self._enqueue(job=run_and_reload)

    async def reload(self) -> None:
        """Re-read the store (only from an exclusive job: no append is in flight)."""
        await self.load()
        await self._notify()

    async def recorded(self, event: Event) -> None:
        """An exclusive job appended `event` itself at the head the writer holds (a role
        change's HA event, which touches no item): the head moves to it, no version is read."""
        self._position, self._chain = event.position, event.chain
        self._head_epoch, self._last_recorded = event.epoch, event.recorded_at
        await self._notify()

    async def barrier(self) -> int:
        """The head position once every command queued so far has been committed (or failed)."""

        async def head() -> int:
            return self._position

        position: int = await self.exclusive(head, reload=False)
        return position

    def close(self) -> None:
        """Stop intake; `run` finishes what is queued, then returns."""
        self._closed = True
        self._queue.put_nowait(None)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            commands: list[_Pending] = []
            for pending in batch:
                if pending is None:
                    continue
                if pending.command is not None:
                    commands.append(pending)
                    continue
                if commands:  # keep order: commands queued before a job commit before it
                    await self._commit(commands)
                    commands = []
                await self._run_job(pending)
            if commands:
                await self._commit(commands)
            if self._closed and self._queue.empty():
                return

    async def _run_job(self, pending: _Pending) -> None:
        assert pending.job is not None
        try:
            result = await pending.job()
        except Exception as error:
            if not pending.future.done():
                pending.future.set_exception(error)
            return
        if not pending.future.done():
            pending.future.set_result(result)

    async def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        if await self._guard.refused([p.future for p in batch], self._read_head):
            return
        epoch, recorded_at = self._epoch(), recorded_now(self._last_recorded)
        overlay: dict[tuple[str, str], ItemVersion] = {}
        accepted: list[tuple[_Pending, Event, bool]] = []
        position, chain = self._position, self._chain
        for pending in batch:
            if pending.future.done():  # the client went away before we got to it
                continue
            cmd = pending.command
            assert cmd is not None
            if pending.epoch is not None and (pending.epoch != epoch or not self._writable()):
                pending.future.set_exception(
                    NotWritable(
                        "the roles changed before this write's turn: it was not appended", None
                    )
                )
                continue
            try:
                event, created = event_for(
                    cmd, self._versions, overlay, position + 1, epoch, recorded_at
                )
            except ShadowlineError as error:
                pending.future.set_exception(error)
                continue
            body = canonical(event)  # once, for the chain and the signature
            chain = chain_of(chain, body)
            signature = (
                trust.signature_of(self._secret, self._cluster, chain, body)
                if self._secret
                else None
            )
            event = sealed(event, chain, signature)
            position += 1
            accepted.append((pending, event, created))
        if not accepted:
            return
        events = [e for _, e, _ in accepted]
        if not await self._append(events, overlay, [p for p, _, _ in accepted]):
            return
        for pending, event, created in accepted:
            if not pending.future.done():
                pending.future.set_result((event, created))
        if self._on_batch is not None:
            self._on_batch(len(accepted), time.perf_counter() - started)
        for observer in self.on_commit:
            observer(events)

    async def _append_replicated(self, events: Sequence[Event]) -> None:
        refused = await self._guard.ready(self._read_head)
        if refused is not None:
            raise Unavailable(refused)
        overlay = check_replicated(
            self._position, self._chain, self._head_epoch, self._versions, events
        )
        if not await self._append(list(events), overlay, []):
            raise Unavailable("could not append replicated events")

    async def _append(
        self,
        events: list[Event],
        overlay: dict[tuple[str, str], ItemVersion],
        waiting: list[_Pending],
    ) -> bool:
        try:
            await self._store.append(events, self._position)
        except Exception as error:
            # The outcome is unknown (COMMIT may have landed): fail the batch, then re-read the
            # truth from the database before deciding anything else.
            log.error("append of %d events failed: %s", len(events), error)
            fail_all((p.future for p in waiting), self._guard.failure(error))
            await self._guard.reload(self._read_head)
            return False
        last = events[-1]
        self._versions.update(overlay)
        self._position, self._chain = last.position, last.chain
        self._head_epoch, self._last_recorded = last.epoch, last.recorded_at
        await self._notify()
        return True

    async def _notify(self) -> None:
        async with self.committed:
            self.committed.notify_all()
