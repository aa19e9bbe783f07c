"""A publishing channel the broker nacks on is replaced by a new one.

Seen with RabbitMQ 3.10.8 on a 3-node cluster (tests/e2e/test_broker_cluster.py, in 3 of 4
whole-suite CI runs): the master's node killed, its link reconnected to another node, and the
first relay publish on the new channel went out before the replication quorum queue had elected
its new leader (0.4 s later). From then on the broker nacked every publish on that channel, for
30 s and more, with nothing in its logs, while a channel opened after the election published
fine. A channel's client state for a quorum queue is made at its first publish to the queue,
from the queue's record, which still named the dead node's member as leader; that state did not
recover. So a nack replaces the channel: the publisher retries (the relay does) on a channel
whose queue state is made afresh, and one opened before the election is replaced again at its
own first nack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp import commands

log = logging.getLogger("shadowline.adapters.broker")

# The old channel is closed this long after its replacement, so that what else was in flight
# on it (a monitoring message, a command's reply) still gets its own confirm or nack.
CLOSE_AFTER = 5.0
CLOSE_WITHIN = 2.0  # seconds the old channel's close may take, in the background
_closing: set[asyncio.Task[None]] = set()  # referenced until done (the loop holds tasks weakly)


def nacked(error: BaseException) -> bool:
    """Whether `error` is the broker's negative confirm of a publish."""
    return isinstance(error, aiormq.exceptions.DeliveryError) and isinstance(
        error.frame, commands.Basic.Nack
    )


async def renewed(
    connection: AbstractConnection, old: AbstractChannel, exchanges: dict[str, AbstractExchange]
) -> tuple[AbstractChannel, dict[str, AbstractExchange]]:
    """A new confirming channel and the same exchanges on it (no round trip: they exist);
    `old` is closed in the background, once what was in flight on it is settled."""
    fresh = await connection.channel(publisher_confirms=True, on_return_raises=True)
    moved = {
        kind: await fresh.get_exchange(exchange.name, ensure=False)
        for kind, exchange in exchanges.items()
    }
    closing = asyncio.ensure_future(_close(old))
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)
    return fresh, moved


async def _close(channel: AbstractChannel) -> None:
    await asyncio.sleep(CLOSE_AFTER)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(channel.close(), CLOSE_WITHIN)
