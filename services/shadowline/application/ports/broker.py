"""What replication needs of the broker, in domain terms: the master publishes events with the
broker's confirm; the shadow takes them from its queue in batches, each event with a handle
that settles its delivery. adapters.broker.BrokerLink and entrypoints.amqp.replication satisfy
these; no AMQP type reaches the application."""

from __future__ import annotations

from typing import Protocol

from shadowline.domain.events import Event


class EventPublisher(Protocol):
    async def publish_event(self, event: Event, confirm_within: float) -> None:
        """Return once the broker confirmed the event; raise if it refused or did not confirm
        within `confirm_within` seconds (an unroutable event is refused)."""
        ...


class Settle(Protocol):
    """How one delivered event leaves its queue: the application decides which."""

    @property
    def origin(self) -> str:
        """Where it came from, for what is said about it (the routing key)."""
        ...

    async def ack(self) -> None:
        """Applied, or a duplicate of what this store holds: gone from the queue."""
        ...

    async def drop(self) -> None:
        """Refused for good without an alert (the caller counted it): dead-lettered."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Refused for good, with alert.dead-lettered naming the message and `reason`."""
        ...

    async def hand_back(self) -> None:
        """Not applied now: redelivered later; on its last allowed delivery dead-lettered with
        its alert instead (the broker would drop the next return silently)."""
        ...


Delivered = tuple[Event, Settle]


class ReplicationFeed(Protocol):
    """The shadow's replication queue, as the applier reads it."""

    async def next_batch(self, limit: int, quiet_after: float) -> list[Delivered] | None:
        """Up to `limit` events delivered since the last call, waiting up to `quiet_after`
        seconds for the first one; None when none came (the queue is quiet). Deliveries that
        are not events at all were already refused (counted, alerted throttled)."""
        ...

    async def pending(self) -> int:
        """Messages still in the queue or taken but not yet handed out (0 when unknown)."""
        ...


class FeedControl(Protocol):
    """Starting and stopping the shadow's consumption of its replication queue."""

    async def declare(self) -> None:
        """Make sure the queue exists and is bound, before anything is copied from the master."""
        ...

    async def consume(self) -> None: ...

    async def stop(self) -> None:
        """Stop consuming; hand back whatever was taken and not yet handed out."""
        ...
