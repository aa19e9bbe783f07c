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

from aio_pika import Message

from shadowline.adapters.broker import BrokerLink, json_message
from shadowline.adapters.store import EventStore
from shadowline.application.writer import Writer
from shadowline.domain.events import Event, envelope

log = logging.getLogger(__name__)


def message_for(event: Event) -> tuple[str, Message]:
    return event.routing_key, json_message(
        envelope(event),
        message_id=str(event.id),
        headers={"position": event.position, "epoch": event.epoch, "type": event.type},
    )


class Relay:
    def __init__(
        self,
        store: EventStore,
        writer: Writer,
        broker: BrokerLink,
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
        failures = 0
        while True:
            if self._writer.position <= self.cursor:
                await self._wait_for_commit()
                continue
            try:
                batch = await self._store.read(self.cursor, self._window)
                confirmed = await self._publish(batch)
            except (
                Exception
            ) as error:  # broker or database trouble: back off, resume from the cursor
                failures += 1
                log.warning("relay paused at position %d: %s", self.cursor, error)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            if confirmed == self.cursor:  # nothing confirmed: the broker refused or timed out
                failures += 1
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            await self._store.set_relay_cursor(confirmed)
            self.cursor, failures = confirmed, 0
            self._on_cursor(confirmed)

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
            *(self._publish_one(event) for event in batch), return_exceptions=True
        )
        confirmed = self.cursor
        for event, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("publish of position %d not confirmed: %r", event.position, result)
                break
            confirmed = event.position
        return confirmed

    async def _publish_one(self, event: Event) -> None:
        routing_key, message = message_for(event)
        await self._broker.publish_event(message, routing_key, confirm_within=self._timeout)
