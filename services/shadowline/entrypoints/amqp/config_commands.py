"""Config changes published on the broker (config.put.<kind>, config.delete.<kind>), applied and
answered by the writable master. What a command says is read in amqp.command_reader.

The queue is consumed only while this instance may write; during a failover the commands wait
in it and the next master answers them. Each command goes through the same ConfigService as
PUT/DELETE, so it is validated, conflict-checked and acknowledged exactly like them (after the
commit, and in sync replication after the shadow applied it), and refused with the same status
and body (entrypoints.errors is the one mapping of errors).

Commands are handled one at a time, in delivery order: the check "was this command_id applied
already?" and the append that follows can then never race with a redelivery of the same
command, and one publisher's changes to an item apply in the order it published them. The
answer to a command that was applied is read back from its event (migration 0004 indexes
`command_id`), which replication copies to the shadow, so it survives a restart and a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from shadowline.adapters.broker import (
    CONFIG_DELIVERY_LIMIT,
    BrokerLink,
    deliveries,
    last_delivery,
)
from shadowline.adapters.command_log import CommandLog
from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.service import ConfigService
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import (
    Forbidden,
    NotAcknowledged,
    NotWritable,
    ShadowlineError,
    Unavailable,
)
from shadowline.entrypoints.amqp.command_reader import (
    CommandReader,
    ConfigCommand,
    applied_reply,
    command_id_of,
    command_schemas,
    refusal,
    repeated,
)
from shadowline.entrypoints.errors import BodyTooLarge

__all__ = ["CommandReader", "ConfigCommands", "command_schemas"]

log = logging.getLogger(__name__)

# One at a time: what a master holds when it is fenced goes back to the queue, and each return
# spends one of the queue's deliveries (x-delivery-count), so it holds no more than it handles.
PREFETCH = 1
SETTLE = 0.2  # seconds for deliveries already on their way to land before handing back
# Refusals of well-formed commands by an allowed publisher (404, 409, 422 of the value) are
# remembered in memory only (applied commands are found in the log): the same publisher's
# repeated command_id gets the same refusal while this master runs, and is evaluated again after
# a restart or a failover. Malformed, oversized and unauthorized commands are not remembered
# (nothing in them is trusted), nor outages (they are waited out, never answered).
REFUSALS_KEPT = 10_000
RETRY_PAUSE_MAX = 2.0  # seconds before a command that failed unexpectedly goes back
# A database outage is waited out in place: 0.2 s, doubling, at most 5 s between tries.
STORE_WAIT_FIRST, STORE_WAIT_MAX = 0.2, 5.0


class ConfigCommands:
    def __init__(
        self,
        *,
        service: ConfigService,
        commands: CommandLog,
        broker: BrokerLink,
        reader: CommandReader,
        alert: AlertSink,
    ) -> None:
        self._service = service
        self._commands = commands
        self._broker = broker
        self._reader = reader
        self._alert = alert
        self._refused: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    # -- consuming while writable ------------------------------------------------------------

    async def run(self) -> None:
        """Consume whenever this instance may write; cancelled when it stops being master."""
        channel, queue = await self._broker.config_command_queue(PREFETCH)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        try:
            while True:
                await self._until_writable()
                await self._consume(queue, inbox)
        finally:
            # Closing the channel hands every command not yet acknowledged back to the queue.
            with contextlib.suppress(Exception):
                await channel.close()

    async def _until_writable(self) -> None:
        await self._service.role.wait_for(lambda state: state.writable)

    async def _next(
        self, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> AbstractIncomingMessage | None:
        """The next command, or None once this instance may no longer write."""
        getting = asyncio.ensure_future(inbox.get())
        stopping = asyncio.ensure_future(self._service.role.wait_for(lambda s: not s.writable))
        try:
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not getting.done():
                getting.cancel()
        # A command that came with the fence is still handled: it is refused as not writable
        # and handed back with the rest.
        return getting.result() if getting.done() and not getting.cancelled() else None

    async def _consume(
        self, queue: AbstractQueue, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> None:
        tag = await queue.consume(inbox.put)
        log.info("consuming config commands from %s", queue.name)
        held: AbstractIncomingMessage | None = None
        try:
            while held is None and (message := await self._next(inbox)) is not None:
                if not await self._handle(message):
                    held = message
        finally:
            await self._hand_back(queue, tag, inbox, held)

    async def _hand_back(
        self,
        queue: AbstractQueue,
        tag: str,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        held: AbstractIncomingMessage | None,
    ) -> None:
        """Stop consuming first (else the broker hands the commands straight back to us), then
        return what we hold, so the queue's next consumer (the next master) takes it. Each
        return spends a delivery: one on its last is dead-lettered with its alert instead, as
        RabbitMQ would dead-letter it on the next return without a word."""
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
            log.info("stopped consuming config commands: this instance may not write")
        await asyncio.sleep(SETTLE)
        returned = [held] if held is not None else []
        while not inbox.empty():
            returned.append(inbox.get_nowait())
        for message in returned:
            with contextlib.suppress(Exception):
                if last_delivery(message, CONFIG_DELIVERY_LIMIT):
                    reason = (
                        f"handed back {deliveries(message) + 1} times: no master could answer it"
                    )
                    await self._dead_letter(message, reason)
                else:
                    await message.nack(requeue=True)

    # -- one command ---------------------------------------------------------------------------

    async def _handle(self, message: AbstractIncomingMessage) -> bool:
        """Answer and acknowledge one command; False if it must go back to the queue."""
        try:
            reply = await self._answer_when_stored(message)
        except NotWritable as error:
            log.info("config command handed back to the queue: %s", error)
            return False
        except Exception as error:  # a bug: try again, up to the delivery limit
            await self._retry_or_dead_letter(message, error)
            return True
        if message.reply_to:
            await self._broker.publish_reply(message.reply_to, message.correlation_id, reply)
        elif not reply["ok"]:
            await self._dead_letter(message, f"refused ({reply['status']}) with no reply_to")
            return True
        else:  # valid and applied: refusing it would only lose the change without a word
            log.info("config command %s has no reply_to: applied, nobody told", reply["command_id"])
        await message.ack()
        return True

    async def _answer_when_stored(self, message: AbstractIncomingMessage) -> dict[str, Any]:
        """The answer, waiting out a database outage in place: the command stays with this
        master (neither answered nor returned, so no delivery is spent) until the store answers
        or this instance may no longer write (then NotWritable hands it back)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Unavailable),
            wait=wait_exponential(multiplier=STORE_WAIT_FIRST, max=STORE_WAIT_MAX),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._answer_or_hand_back(message)
        raise AssertionError("unreachable: retried until it answers or raises")

    async def _answer_or_hand_back(self, message: AbstractIncomingMessage) -> dict[str, Any]:
        try:
            return await self.answer(message.routing_key or "", message.body, message.user_id)
        except NotAcknowledged as error:
            # Stored, not yet acknowledged: handing it back would spend a delivery per try and
            # dead-letter a stored command at the limit; asked again here, it is found in the
            # command log and waits at the gate once more.
            if not self._service.role.writable:
                raise
            log.warning("config command waits to be acknowledged: %s", error)
            raise Unavailable(str(error)) from error
        except Unavailable as error:
            if not self._service.role.writable:
                raise NotWritable(f"stopped waiting for the store: {error}", None) from error
            log.warning("config command waits for the event store: %s", error)
            raise

    async def answer(self, routing_key: str, body: bytes, user_id: str | None) -> dict[str, Any]:
        """The reply to one command, after applying it if it is valid; NotWritable if this
        instance may not write (the command must wait for the master), Unavailable if the
        store failed (the outcome is unknown: the command must be tried again)."""
        try:
            command = self._reader.read(routing_key, body, user_id)
        except (ShadowlineError, BodyTooLarge) as error:
            # An oversized body is not even parsed for its command_id.
            parsed = None if isinstance(error, BodyTooLarge) else command_id_of(body)
            return self._refuse(routing_key, parsed, error)
        remembered = (command.user, command.command_id)
        if (known := self._refused.get(remembered)) is not None:
            return known
        try:
            applied = await self._commands.applied(command.command_id)
            if applied is not None:
                # Answered only once its first answer could have gone out: the first attempt
                # may have stopped at the gate (no lease, the shadow not acknowledging).
                await self._service.admit_again(applied.position)
                return repeated(command, applied)
            return await self._apply(command)
        except (NotWritable, Unavailable):
            raise
        except ShadowlineError as error:
            reply = self._refuse(routing_key, command.command_id, error)
            self._refused[remembered] = reply
            while len(self._refused) > REFUSALS_KEPT:
                self._refused.popitem(last=False)
            return reply

    def _refuse(self, routing_key: str, command_id: str | None, error: Exception) -> dict[str, Any]:
        if isinstance(error, Forbidden):
            self._alert(
                AlertName.REJECTED_COMMAND,
                f"config command refused: {error}",
                {"command_id": command_id, "via": f"broker ({routing_key})"},
            )
        return refusal(command_id, error)

    async def _apply(self, command: ConfigCommand) -> dict[str, Any]:
        service, meta = self._service, command.metadata()
        if command.verb == "put":
            result = await service.put(
                command.kind, command.name, command.value, command.expected_version, meta
            )
        else:
            result = await service.delete(
                command.kind, command.name, command.expected_version, meta
            )
        log.info(
            "config command %s by %s: %s %s/%s is version %d at position %s",
            command.command_id, meta["actor"], command.verb, command.kind, command.name,
            result.version, result.position,
        )  # fmt: skip
        return applied_reply(command, result.as_dict())

    async def _retry_or_dead_letter(
        self, message: AbstractIncomingMessage, error: Exception
    ) -> None:
        attempts = deliveries(message) + 1
        if last_delivery(message, CONFIG_DELIVERY_LIMIT):
            await self._dead_letter(message, f"failed {attempts} times, last: {error!r}")
            return
        log.warning("config command failed (attempt %d), retrying: %r", attempts, error)
        await asyncio.sleep(min(2**attempts * 0.1, RETRY_PAUSE_MAX))
        await message.nack(requeue=True)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        self._alert(
            AlertName.DEAD_LETTERED,
            f"config command dead-lettered: {reason}",
            {"message_id": message.message_id, "routing_key": message.routing_key or ""},
        )
        await message.reject(requeue=False)
