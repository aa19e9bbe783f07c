"""The relay: the event table is the outbox, and this publishes it to RabbitMQ.

It reads the events after its cursor, publishes up to `window` of them at once on a channel
with publisher confirms and `mandatory`, and advances the cursor only over confirmed,
contiguous positions. A crash anywhere repeats at most what was not yet recorded as confirmed
(at-least-once; the shadow skips duplicates by position). It is woken right after each commit
and also polls, in case a wake-up is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from shadowline.application.ports.broker import EventPublisher
from shadowline.application.ports.store import EventStore
from shadowline.application.writer import Writer
from shadowline.domain.events import Event

log = logging.getLogger(__name__)


class NothingConfirmed(Exception):
    """Raised when the broker confirmed none of a batch (it refused, or timed out): back off."""


class Relay:
    def __init__(
        self,
        store: EventStore,
        writer: Writer,
        broker: EventPublisher,
        *,
        window: int = 500,
        publish_timeout: float = 5.0,
        poll: float = 1.0,
        on_cursor: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._broker = broker
        self._window = window
        self._timeout = publish_timeout
        self._poll = poll
        self.cursor = 0
        self._on_cursor = on_cursor or (lambda position: None)  # the published-position gauge

    async def run(self) -> None:
        self.cursor = await self._store.relay_cursor()
        self._on_cursor(self.cursor)
        log.info("relay starts after position %d", self.cursor)
        while True:
            if self._writer.position <= self.cursor:
                await self._wait_for_commit()
                continue
            confirmed = await self._next_confirmed()
            await self._store.set_relay_cursor(confirmed)
            self.cursor = confirmed
            self._on_cursor(confirmed)

    async def _next_confirmed(self) -> int:
        """Publish from the cursor until some of it is confirmed; broker or database trouble
        backs off (0.2 s doubling to 5 s) and resumes from the cursor, for as long as it lasts."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            before_sleep=self._paused,
        ):
            with attempt:
                batch = await self._store.read(self.cursor, self._window)
                confirmed = await self._publish(batch)
                if confirmed == self.cursor:
                    raise NothingConfirmed
        return confirmed

    def _paused(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(error, NothingConfirmed):  # those were logged event by event
            log.warning("relay paused at position %d: %s", self.cursor, error)

    async def _wait_for_commit(self) -> None:
        async with self._writer.committed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._writer.committed.wait_for(lambda: self._writer.position > self.cursor),
                    self._poll,
                )

    async def _publish(self, batch: Sequence[Event]) -> int:
        """Publish a batch; return the last position of its confirmed, contiguous prefix."""
        results = await asyncio.gather(
            *(self._broker.publish_event(e, confirm_within=self._timeout) for e in batch),
            return_exceptions=True,
        )
        confirmed = self.cursor
        for event, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("publish of position %d not confirmed: %r", event.position, result)
                break
            confirmed = event.position
        return confirmed
