"""The promote-command consumer: the instance's own command queue, `promote.<instance>`.

The queue is exclusive and consumed without acks: a refused command is dropped, never
returned, so it cannot come back (and has no delivery limit to reach).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson
from aio_pika.abc import AbstractIncomingMessage

from shadowline.application.ports.monitoring import Alerts, HaCounts
from shadowline.application.supervisor import retrying
from shadowline.domain import alerting
from shadowline.domain.errors import Forbidden, PromotionAborted, ShadowlineError
from shadowline.domain.promote import PromoteCommand

log = logging.getLogger(__name__)

MAX_COMMAND = 64 * 1024  # bytes: a promote command is a few hundred


class CommandBroker(Protocol):
    async def start(self) -> None: ...

    async def command_queue(self, instance: str) -> Any: ...


class Promoter(Protocol):
    async def promote(self, command: PromoteCommand, via: str) -> dict[str, Any]: ...


class PromoteCommands:
    def __init__(
        self,
        *,
        instance: str,
        broker: CommandBroker,
        failover: Promoter,
        counts: HaCounts,
        alerts: Alerts,
    ) -> None:
        self._instance = instance
        self._broker = broker
        self._failover = failover
        self._counts = counts
        self._alerts = alerts

    async def run(self, first: bool = False) -> None:
        """Consume the command queue until cancelled (a role task: `first` is not used)."""
        await retrying("connecting to RabbitMQ", self._broker.start)
        queue = await retrying(
            "declaring the command queue", lambda: self._broker.command_queue(self._instance)
        )
        await queue.consume(self.on_command, no_ack=True)
        await asyncio.Future()  # consume until cancelled

    async def on_command(self, message: AbstractIncomingMessage) -> None:
        """Act on a promote command; refuse anything else with alert.rejected-command."""
        routing_key = message.routing_key or ""
        try:
            command = self._promote_command(routing_key, message.body)
        except Forbidden as error:
            self._counts.rejected(error)
            self._refused(routing_key, error)
            return
        try:
            await self._failover.promote(command, via=f"broker ({routing_key})")
        except Forbidden as error:  # promote counted and alerted it, with the command's id
            log.warning("command %s refused: %s", routing_key, error)
        except PromotionAborted as error:  # the hook failed: alerted as hook-failed already
            log.warning("command %s not carried out: %s", routing_key, error)
        except ShadowlineError as error:
            self._refused(routing_key, error)

    def _promote_command(self, routing_key: str, body: bytes) -> PromoteCommand:
        """The promote command a delivery carries, else Forbidden. The queue gets whatever is
        routed `*.<instance>` (and whatever is sent to it by name on the default exchange), but
        only `promote.<instance>` with a body of type promote is a command this instance knows:
        the routing key must agree with the body, which alone is signed."""
        expected = f"promote.{self._instance}"
        if len(body) > MAX_COMMAND:
            raise Forbidden(f"unknown command {routing_key!r}: {len(body)} bytes, no command is")
        try:
            command = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise Forbidden(f"unknown command {routing_key!r}: not JSON ({error})") from error
        kind = command.get("type") if isinstance(command, dict) else type(command).__name__
        if routing_key != expected or kind != "promote":
            shown = repr(kind)[:60]  # the sender's words: bounded in the alert
            raise Forbidden(
                f"unknown command {routing_key!r} of type {shown}: only {expected} is taken here"
            )
        return PromoteCommand.parse(command)

    def _refused(self, routing_key: str, error: Exception) -> None:
        found = alerting.rejected_command(error, routing_key)
        self._alerts.alert(found.name, found.message, dict(found.details))
