"""Whether each RabbitMQ node of SHADOWLINE_AMQP_URL answers now (the preflight's broker check).

Each node gets a plain AMQP connection of its own (TCP, the AMQP handshake with this instance's
login), opened and closed again, all nodes at once, each bounded by `per_node` seconds: a
stopped or cut-off node accepts TCP and then says nothing. Nodes are named by host:port, never
by their URL (it holds the password).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika

from shadowline.adapters.amqp_nodes import node_of, split_urls
from shadowline.domain.preflight_reach import NodeAnswer


async def _one(url: str, per_node: float, name: str) -> NodeAnswer:
    started = time.monotonic()
    try:
        async with asyncio.timeout(per_node):
            connection = await aio_pika.connect(
                url, timeout=per_node, client_properties={"connection_name": name}
            )
    except Exception as error:  # refused, timed out, login refused, ...: that node's verdict
        said = str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            said = f"no answer within {per_node:g} s"
        return NodeAnswer(node_of(url), time.monotonic() - started, said)
    seconds = time.monotonic() - started
    with contextlib.suppress(Exception):  # it answered: closing it is no part of the verdict
        await asyncio.wait_for(connection.close(), per_node)
    return NodeAnswer(node_of(url), seconds, None)


async def answers(amqp_url: str, per_node: float, name: str) -> list[NodeAnswer]:
    """Each node's answer (in the order listed), within `per_node` seconds in all."""
    return list(await asyncio.gather(*(_one(url, per_node, name) for url in split_urls(amqp_url))))
