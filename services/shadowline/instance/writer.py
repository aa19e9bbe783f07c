"""The single writer of a store, with group commit.

Requests queue up while a transaction is in flight; the next transaction takes all of them (up
to `batch_max`). Each command is decided on its own against the versions as they stand after
the commands before it in the batch, so a 409 for one request never fails its neighbours. Only
the commands that pass are appended, in one transaction; their futures resolve after COMMIT, so
nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from uuid import uuid4

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shadowline.adapters.store import EventStore
from shadowline.domain.commands import Command, ItemVersion, decide
from shadowline.domain.errors import ShadowlineError, Unavailable
from shadowline.domain.events import Event, link

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    command: Command
    future: asyncio.Future[tuple[Event, bool]]
    enqueued: float = field(default_factory=time.perf_counter)


BatchObserver = Callable[[int, float], None]


class Writer:
    def __init__(
        self,
        store: EventStore,
        *,
        epoch: Callable[[], int],
        batch_max: int = 1000,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._store = store
        self._epoch = epoch
        self._batch_max = batch_max
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._versions: dict[tuple[str, str], ItemVersion] = {}
        self._position = 0
        self._chain = b""
        self._last_recorded: datetime | None = None
        self._closed = False
        self.committed = asyncio.Condition()

    @property
    def position(self) -> int:
        return self._position

    async def load(self) -> None:
        """Read the head and every item's version; the writer trusts no other memory."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Unavailable),
            wait=wait_exponential(multiplier=0.1, max=2),
            stop=stop_after_delay(30),
            reraise=True,
        ):
            with attempt:
                head = await self._store.head()
                self._versions = await self._store.versions()
        self._position, self._chain, self._last_recorded = (
            head.position,
            head.chain,
            head.recorded_at,
        )

    async def submit(self, command: Command) -> tuple[Event, bool]:
        """Append one command's event; returns (event, created) once it is durable."""
        if self._closed:
            raise Unavailable("the instance is shutting down")
        future: asyncio.Future[tuple[Event, bool]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(command, future))
        return await future

    def close(self) -> None:
        """Stop intake; `run` finishes what is queued, then returns."""
        self._closed = True
        self._queue.put_nowait(_Pending(None, None))  # type: ignore[arg-type]

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [p for p in batch if p.command is not None]
            if live:
                await self._commit(live)
            if self._closed and self._queue.empty():
                return

    def _now(self) -> datetime:
        # recorded_at never goes backwards, so "state as of a time" is a prefix of the log.
        now = datetime.now(UTC)
        if self._last_recorded is not None and now < self._last_recorded:
            return self._last_recorded
        return now

    async def _commit(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        epoch, recorded_at = self._epoch(), self._now()
        overlay: dict[tuple[str, str], ItemVersion] = {}
        accepted: list[tuple[_Pending, Event, bool]] = []
        position, chain = self._position, self._chain
        for pending in batch:
            if pending.future.done():  # the client went away before we got to it
                continue
            cmd = pending.command
            key = (cmd.kind, cmd.name)
            try:
                decision = decide(cmd, overlay.get(key, self._versions.get(key)))
            except ShadowlineError as error:
                pending.future.set_exception(error)
                continue
            position += 1
            event = Event(
                id=uuid4(),
                position=position,
                epoch=epoch,
                type=decision.type,
                kind=cmd.kind,
                name=cmd.name,
                version=decision.version,
                data=getattr(cmd, "value", None),
                metadata=cmd.metadata,
                recorded_at=recorded_at,
            )
            chain = link(chain, event)
            event = replace(event, chain=chain)
            overlay[key] = ItemVersion(decision.version, decision.type == "ConfigPut")
            accepted.append((pending, event, decision.created))
        if not accepted:
            return
        try:
            await self._store.append([e for _, e, _ in accepted], self._position)
        except Exception as error:
            # The outcome is unknown (COMMIT may have landed): fail the batch, then re-read the
            # truth from the database before deciding anything else.
            log.error("append of %d events failed: %s", len(accepted), error)
            failure = error if isinstance(error, ShadowlineError) else Unavailable(str(error))
            for pending, _, _ in accepted:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            await self._reload_after_failure()
            return
        self._versions.update(overlay)
        self._position, self._chain, self._last_recorded = position, chain, recorded_at
        for pending, event, created in accepted:
            if not pending.future.done():
                pending.future.set_result((event, created))
        if self._on_batch is not None:
            self._on_batch(len(accepted), time.perf_counter() - started)
        async with self.committed:
            self.committed.notify_all()

    async def _reload_after_failure(self) -> None:
        try:
            await self.load()
        except Unavailable as error:
            log.error("could not re-read the store after a failed append: %s", error)
