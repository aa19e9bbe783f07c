"""Config changes published on the broker: `AsyncBrokerClient` and its sync twin `BrokerClient`.

A change is a command on shadowline.<cluster>.commands (routing key config.put.<kind> or
config.delete.<kind>, body schemas/commands/config-<verb>.json). It waits in the cluster's
durable queue until the writable master takes it, and the master's reply comes back by
RabbitMQ's direct reply-to: the client declares nothing and reads no queue, so the
least-privilege `shadowline-<cluster>-publisher` user of `shadowline broker-setup` suffices.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, cast

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import DeliveryError
from aiormq.exceptions import ChannelNotFoundEntity
from yarl import URL

from shadowline.adapters.amqp_nodes import Nodes
from shadowline.adapters.broker import Names
from shadowline.client._loop import LoopThread
from shadowline.client.types import (
    ClientError,
    CommandRefused,
    ConfigReply,
    ReplyApplied,
)

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_ABSENT = object()


class ReplyTimeout(TimeoutError):
    """Raised when no reply came in time. The command may still be applied (it waits for a
    master): publish it again with the same command_id to learn its outcome, never twice."""

    def __init__(self, command_id: str, timeout: float) -> None:
        self.command_id = command_id
        super().__init__(
            f"no reply to config command {command_id} within {timeout:.0f}s; it may still be "
            "applied: publish it again with the same command_id to learn its outcome"
        )


class Unroutable(ClientError):
    """Raised when the broker has nowhere to put a command: no master ever declared the
    cluster's config command queue (a wrong cluster name, or a cluster never started)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, {"error": message}, via="unroutable")


def command(
    kind: str,
    name: str,
    value: Any = _ABSENT,
    *,
    expected_version: int | None = None,
    reason: str | None = None,
    command_id: str | None = None,
) -> dict[str, Any]:
    """The body of a config command (a put when `value` is given, else a delete)."""
    body: dict[str, Any] = {"command_id": command_id or str(uuid.uuid4()), "kind": kind}
    body["name"] = name
    if value is not _ABSENT:
        body["value"] = value
    if expected_version is not None:
        body["expected_version"] = expected_version
    if reason:
        body["reason"] = reason
    return body


class AsyncBrokerClient:
    """Publishes config changes on one cluster's broker and waits for the master's replies."""

    def __init__(self, amqp_url: str, cluster: str, *, timeout: float = 30.0) -> None:
        # One broker node, or several of one RabbitMQ cluster (comma-separated): a connection
        # lost is made again to the next node first.
        self._nodes = Nodes(amqp_url)
        self._names = Names(cluster)
        self._timeout = timeout
        # RabbitMQ refuses a message whose user_id is not the connection's user: the master
        # can trust it as the author of the change.
        self._user = URL(self._nodes.urls[0]).user or "guest"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        # Replies by correlation id (the command_id); a list, since a caller may publish one
        # command_id again while an earlier publish of it still waits (each gets one answer).
        self._waiting: dict[str, list[asyncio.Future[ConfigReply]]] = {}
        self._connecting = asyncio.Lock()  # concurrent calls share one connection

    async def __aenter__(self) -> AsyncBrokerClient:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (again, if the connection was lost); calls connect by themselves."""
        async with self._connecting:
            if self._channel is None or self._channel.is_closed:
                await self._connect()

    async def _connect(self) -> None:
        await self.close()
        self._connection = await self._nodes.connect(per_node=self._timeout)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)  # before publishing: RabbitMQ's rule
        self._channel = channel

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        pending = [f for f in self._waiting.get(message.correlation_id or "", []) if not f.done()]
        if not pending:  # a repeated answer, or one we stopped awaiting
            return
        waiting = pending[0]
        try:
            waiting.set_result(cast(ConfigReply, orjson.loads(message.body)))
        except orjson.JSONDecodeError as error:
            waiting.set_exception(ClientError(502, {"error": f"reply is not JSON: {error}"}))

    async def publish_config_change(
        self, verb: str, body: dict[str, Any], *, reply_within: float | None = None
    ) -> ConfigReply:
        """Publish one command (`verb` put or delete, `body` as `command()` builds it) and
        return the master's reply, ok or not; ReplyTimeout if none comes within `reply_within`
        seconds (default: the client's timeout)."""
        await self.connect()
        assert self._channel is not None
        command_id = str(body["command_id"])
        waiting: asyncio.Future[ConfigReply] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(command_id, []).append(waiting)
        try:
            await self._publish(self._channel, f"config.{verb}.{body['kind']}", command_id, body)
            within = self._timeout if reply_within is None else reply_within
            try:
                return await asyncio.wait_for(waiting, within)
            except TimeoutError:
                raise ReplyTimeout(command_id, within) from None
        finally:
            others = [f for f in self._waiting.pop(command_id, []) if f is not waiting]
            if others:
                self._waiting[command_id] = others

    async def _publish(
        self, channel: AbstractChannel, routing_key: str, command_id: str, body: dict[str, Any]
    ) -> None:
        message = aio_pika.Message(
            orjson.dumps(body),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,  # may wait out a broker restart
            message_id=command_id,
            correlation_id=command_id,
            reply_to=DIRECT_REPLY_TO,
            user_id=self._user,
        )
        exchange = await channel.get_exchange(self._names.commands, ensure=False)
        try:
            await exchange.publish(message, routing_key, mandatory=True, timeout=self._timeout)
        except DeliveryError as error:
            raise Unroutable(
                f"{routing_key}: no queue takes config commands: no instance of the cluster has "
                f"been a master with HA enabled (a standalone instance takes no broker commands; "
                f"use HTTP) ({error})"
            ) from error
        except ChannelNotFoundEntity as error:
            raise Unroutable(f"{self._names.commands} does not exist ({error})") from error

    async def put(
        self,
        kind: str,
        name: str,
        value: Any,
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        command_id: str | None = None,
        reply_within: float | None = None,
    ) -> ReplyApplied:
        """Create or replace an item; CommandRefused (status 409, 422, ...) if refused."""
        body = command(
            kind,
            name,
            value,
            expected_version=expected_version,
            reason=reason,
            command_id=command_id,
        )
        return _applied(await self.publish_config_change("put", body, reply_within=reply_within))

    async def delete(
        self,
        kind: str,
        name: str,
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        command_id: str | None = None,
        reply_within: float | None = None,
    ) -> ReplyApplied:
        """Delete an item; CommandRefused (404, 409, ...) if refused."""
        body = command(
            kind, name, expected_version=expected_version, reason=reason, command_id=command_id
        )
        return _applied(await self.publish_config_change("delete", body, reply_within=reply_within))


def _applied(reply: ConfigReply) -> ReplyApplied:
    if reply["ok"]:
        return reply
    raise CommandRefused(reply)


class BrokerClient:
    """The sync twin of AsyncBrokerClient, for scripts: same calls, not awaited."""

    def __init__(self, amqp_url: str, cluster: str, *, timeout: float = 30.0) -> None:
        self._loop = LoopThread("shadowline-broker-client")
        self._client = AsyncBrokerClient(amqp_url, cluster, timeout=timeout)

    def __enter__(self) -> BrokerClient:
        self._loop.run(self._client.connect())
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._loop.run(self._client.close())
        finally:
            self._loop.close()

    def publish_config_change(
        self, verb: str, body: dict[str, Any], *, reply_within: float | None = None
    ) -> ConfigReply:
        return self._loop.run(
            self._client.publish_config_change(verb, body, reply_within=reply_within)
        )

    def put(
        self,
        kind: str,
        name: str,
        value: Any,
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        command_id: str | None = None,
        reply_within: float | None = None,
    ) -> ReplyApplied:
        return self._loop.run(
            self._client.put(
                kind,
                name,
                value,
                expected_version=expected_version,
                reason=reason,
                command_id=command_id,
                reply_within=reply_within,
            )
        )

    def delete(
        self,
        kind: str,
        name: str,
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        command_id: str | None = None,
        reply_within: float | None = None,
    ) -> ReplyApplied:
        return self._loop.run(
            self._client.delete(
                kind,
                name,
                expected_version=expected_version,
                reason=reason,
                command_id=command_id,
                reply_within=reply_within,
            )
        )
