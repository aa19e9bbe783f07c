"""The AMQP side of a shadow's replication: its quorum queue, read into batches of events.

Each delivery is parsed into an Event here, bounded before anything is allocated; what is no
event at all (garbage, out of bounds, a header that contradicts its body) is refused at once,
counted and alerted throttled, and dead-lettered. The rest goes to application.replica in
batches, each event with a handle (`QueuedEvent`) through which the application settles its
delivery: acked once applied, dead-lettered with alert.dead-lettered, or handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shadowline.adapters.broker import DELIVERY_LIMIT, BrokerLink, deliveries, last_delivery
from shadowline.application.ports.broker import Delivered
from shadowline.application.ports.monitoring import AlertSink
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import InvalidInput
from shadowline.domain.events import Event, from_envelope
from shadowline.domain.replication import check_bounds

MAX_ENVELOPE = 8 * 1024 * 1024  # bytes: far above any event a master writes

Rejected = Callable[[str, str], None]


class Poison(Exception):
    """A message that can never be applied: it is dead-lettered."""


def parse(message: AbstractIncomingMessage) -> Event:
    if len(message.body) > MAX_ENVELOPE:
        raise Poison(f"{len(message.body)} bytes, more than any event ({MAX_ENVELOPE})")
    try:
        event = from_envelope(orjson.loads(message.body))
        check_bounds(event)
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise Poison(f"not an event envelope: {error.__class__.__name__}: {error}") from error
    except InvalidInput as error:
        raise Poison(f"out of bounds: {error}") from error
    header = (message.headers or {}).get("position")
    if isinstance(header, bytes):
        header = header.decode()
    if header is not None and str(header) != str(event.position):
        raise Poison(f"header position {header} differs from the envelope's {event.position}")
    return event


class QueuedEvent:
    """One delivery of the replication queue, settled as the application decides
    (application.ports.broker.Settle)."""

    def __init__(self, message: AbstractIncomingMessage, alert: AlertSink) -> None:
        self._message = message
        self._alert = alert

    @property
    def origin(self) -> str:
        return self._message.routing_key or ""

    async def ack(self) -> None:
        await self._message.ack()

    async def drop(self) -> None:
        await self._message.reject(requeue=False)

    async def dead_letter(self, reason: str) -> None:
        self._alert(
            AlertName.DEAD_LETTERED,
            f"replication message dead-lettered: {reason}",
            {"message_id": self._message.message_id, "routing_key": self._message.routing_key},
        )
        await self._message.reject(requeue=False)

    async def hand_back(self) -> None:
        """Return the message to the queue; on its last allowed delivery, dead-letter it with
        its alert instead (the broker would dead-letter the next return silently)."""
        if last_delivery(self._message, DELIVERY_LIMIT):
            count = deliveries(self._message) + 1
            await self.dead_letter(f"not applied after {count} deliveries")
        else:
            await self._message.nack(requeue=True)


class ReplicationQueue:
    """The shadow's replication queue as application.ports.broker.ReplicationFeed."""

    def __init__(
        self, broker: BrokerLink, instance: str, *, alert: AlertSink, rejected: Rejected
    ) -> None:
        self._broker = broker
        self._instance = instance
        self._alert = alert
        self._rejected = rejected
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._queue: AbstractQueue | None = None
        self._consumer: str | None = None
        self._held = 0  # taken from the inbox, not yet handed out

    async def declare(self) -> None:
        """Declare the queue (bound to every replicated event) before anything is copied, so
        that what the master publishes meanwhile is kept for this shadow."""
        self._queue = await self._broker.replication_queue(self._instance)

    async def consume(self) -> None:
        assert self._queue is not None, "declare() first"
        self._consumer = await self._queue.consume(self._inbox.put, no_ack=False)

    async def stop(self) -> None:
        """Cancel the consumer and hand back what it holds, so that no stale consumer steals
        every other message from a later one (a consumer outlives the task that started it)."""
        if self._queue is not None and self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer)
            self._consumer = None
        while not self._inbox.empty():
            with contextlib.suppress(Exception):
                await QueuedEvent(self._inbox.get_nowait(), self._alert).hand_back()

    async def next_batch(self, limit: int, quiet_after: float) -> list[Delivered] | None:
        try:
            messages = [await asyncio.wait_for(self._inbox.get(), quiet_after)]
        except TimeoutError:
            return None
        while len(messages) < limit and not self._inbox.empty():
            messages.append(self._inbox.get_nowait())
        self._held = len(messages)
        try:
            return [d for m in messages if (d := await self._delivered(m)) is not None]
        finally:
            self._held = 0

    async def _delivered(self, message: AbstractIncomingMessage) -> Delivered | None:
        try:
            return parse(message), QueuedEvent(message, self._alert)
        except Poison as error:
            # Nothing that is not a signed event can come from the master: counted, with a
            # throttled alert (a flood of garbage must not flood monitoring), dead-lettered.
            self._rejected("event", f"{message.routing_key}: {error}")
            await message.reject(requeue=False)
            return None

    async def pending(self) -> int:
        ready = 0
        # Only a queue being consumed can drain: a shadow that never got to consume it (its
        # master down since it started) must not wait out the takeover delay on it.
        if self._queue is not None and self._consumer is not None:
            with contextlib.suppress(Exception):
                ready = (await self._queue.declare(timeout=1)).message_count or 0
        return ready + self._inbox.qsize() + self._held
