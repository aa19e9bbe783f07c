"""Config changes published on the broker (config.put.<kind>, config.delete.<kind>), applied and
answered by the writable master.

The queue is consumed only while this instance may write; during a failover the commands wait
in it and the next master answers them. Each command goes through the same ConfigService as
PUT/DELETE, so it is validated, conflict-checked and acknowledged exactly like them (after the
commit, and in sync replication after the shadow applied it), and refused with the same status
and body (http_common.error_response is the one mapping of errors).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from jsonschema import Draft202012Validator

from shadowline.adapters.broker import (
    CONFIG_DELIVERY_LIMIT,
    BrokerLink,
    deliveries,
    last_delivery,
)
from shadowline.adapters.command_log import Applied, CommandLog
from shadowline.adapters.resources import schemas_dir
from shadowline.application.service import ConfigService
from shadowline.domain.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotWritable,
    ShadowlineError,
    Unavailable,
)
from shadowline.domain.kinds import LOCAL_KINDS
from shadowline.entrypoints.http.common import MalformedBody, error_response
from shadowline.entrypoints.http.limits import BodyTooLarge
from shadowline.settings import GUEST

log = logging.getLogger(__name__)

# Only saves a broker round trip per command: they are handled one at a time anyway, and what
# the master holds goes back to the queue (one delivery attempt spent) when it stops writing.
# One at a time: what a master holds when it is fenced goes back to the queue, and each return
# spends one of the queue's deliveries (x-delivery-count), so it holds no more than it handles.
PREFETCH = 1
WATCH_EVERY = 0.2  # seconds: RoleState has no change signal; fencing just sets a field
# Refusals of well-formed commands by an allowed publisher (404, 409, 422 of the value) are
# remembered in memory only (applied commands are found in the log): the same publisher's
# repeated command_id gets the same refusal while this master runs, and is evaluated again after
# a restart or a failover. Malformed, oversized and unauthorized commands are not remembered
# (nothing in them is trusted), nor outages (they are waited out, never answered).
REFUSALS_KEPT = 10_000
VERBS = ("put", "delete")
RETRY_PAUSE_MAX = 2.0  # seconds before a command that failed unexpectedly goes back

Alert = Callable[[str, str, dict[str, Any]], None]


def command_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each verb's body, from schemas/commands/config-<verb>.json."""
    folder = schemas_dir() / "commands"
    return {v: orjson.loads((folder / f"config-{v}.json").read_bytes()) for v in VERBS}


@dataclass(frozen=True, slots=True)
class ConfigCommand:
    verb: str
    command_id: str
    kind: str
    name: str
    value: Any
    expected_version: int | None
    reason: str | None
    user: str

    def metadata(self) -> dict[str, Any]:
        # The broker checked user_id against the connection's user, so it is who sent this.
        meta: dict[str, Any] = {
            "actor": f"amqp:{self.user}",
            "request_id": self.command_id,
            "command_id": self.command_id,
        }
        return meta | ({"reason": self.reason} if self.reason else {})


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


class CommandReader:
    """Turns a delivery into a ConfigCommand, or raises what the HTTP API would answer."""

    def __init__(
        self,
        schemas: Mapping[str, Mapping[str, Any]],
        max_bytes: int,
        publishers: frozenset[str],
    ) -> None:
        self._validators = {verb: Draft202012Validator(s) for verb, s in schemas.items()}
        self._max_bytes = max_bytes
        # Whoever may write to the commands exchange (or, by the default exchange, to the queue
        # itself: an instance user of another cluster in the same vhost) is not thereby allowed
        # to change this cluster's configuration: only these broker users are.
        self._publishers = publishers
        if GUEST in publishers:  # only ever by SHADOWLINE_COMMAND_PUBLISHERS (Settings.publishers)
            log.warning(
                "broker user %r may publish config commands (SHADOWLINE_COMMAND_PUBLISHERS): "
                "anyone with RabbitMQ's default login can change this cluster's configuration",
                GUEST,
            )

    def read(self, routing_key: str, body: bytes, user_id: str | None) -> ConfigCommand:
        if len(body) > self._max_bytes:
            raise BodyTooLarge()
        # Who before what: an anonymous or unknown sender learns nothing more. RabbitMQ refuses
        # a user_id other than the connection's user, so user_id is who sent this.
        if not user_id:
            raise Forbidden("the command carries no user_id: publish it with user_id set")
        if user_id not in self._publishers:
            raise Forbidden(
                f"broker user {user_id!r} may not publish config commands here "
                "(SHADOWLINE_COMMAND_PUBLISHERS)"
            )
        doc = parse(body)
        verb, kind = self._route(routing_key)
        errors = [
            FieldError(_path(e.absolute_path), e.message)
            for e in self._validators[verb].iter_errors(doc)
        ]
        if errors:
            raise InvalidInput(errors)
        if doc["kind"] != kind:
            raise InvalidInput([FieldError("$.kind", f"{doc['kind']!r} but routed as {kind!r}")])
        if kind in LOCAL_KINDS:
            message = f"{kind} is local to each instance and never replicated: set it over HTTP"
            raise InvalidInput([FieldError("$.kind", message)])
        return ConfigCommand(
            verb,
            doc["command_id"],
            kind,
            doc["name"],
            doc.get("value"),
            doc.get("expected_version"),
            doc.get("reason"),
            user_id,
        )

    @staticmethod
    def _route(routing_key: str) -> tuple[str, str]:
        words = routing_key.split(".")
        if len(words) != 3 or words[0] != "config" or words[1] not in VERBS:
            problem = f"{routing_key!r} is not config.put.<kind> or config.delete.<kind>"
            raise MalformedBody([FieldError("routing_key", problem)])
        return words[1], words[2]


def parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedBody([FieldError("$", f"malformed JSON: {error}")]) from error


def command_id_of(body: bytes) -> str | None:
    """The command_id to answer with, even for a command that is refused."""
    with contextlib.suppress(orjson.JSONDecodeError):
        doc = orjson.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("command_id"), str):
            return str(doc["command_id"])
    return None


def refusal(command_id: str | None, error: Exception) -> dict[str, Any]:
    """The reply to a refused command: the status and body the HTTP API would answer."""
    response = error_response(error)
    body = orjson.loads(response.body)
    return {"command_id": command_id, "ok": False, "status": response.status_code, **body}


def repeated(command: ConfigCommand, applied: Applied) -> dict[str, Any]:
    """The original outcome of a command_id that was applied before, read from its event."""
    verb = "put" if applied.type == "ConfigPut" else "delete"
    if (verb, applied.kind, applied.name) != (command.verb, command.kind, command.name):
        used = f"command_id {command.command_id} was used for {verb} {applied.kind}/{applied.name}"
        return refusal(command.command_id, Conflict(used))
    return {
        "command_id": command.command_id,
        "ok": True,
        "kind": applied.kind,
        "name": applied.name,
        "version": applied.version,
        "position": applied.position,
        "epoch": applied.epoch,
        "duplicate": True,
    }


class ConfigCommands:
    def __init__(
        self,
        *,
        service: ConfigService,
        commands: CommandLog,
        broker: BrokerLink,
        reader: CommandReader,
        alert: Alert,
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
        # Polled: RoleState has no change signal (fencing only sets a field), and adding one
        # to every writer of the role for this reader would cost more than a check every 0.2 s.
        while not self._service.role.writable:  # noqa: ASYNC110
            await asyncio.sleep(WATCH_EVERY)

    async def _consume(
        self, queue: AbstractQueue, inbox: asyncio.Queue[AbstractIncomingMessage]
    ) -> None:
        tag = await queue.consume(inbox.put)
        log.info("consuming config commands from %s", queue.name)
        held: AbstractIncomingMessage | None = None
        try:
            while held is None and self._service.role.writable:
                try:
                    message = await asyncio.wait_for(inbox.get(), WATCH_EVERY)
                except TimeoutError:
                    continue
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
        await asyncio.sleep(WATCH_EVERY)  # deliveries already on their way land in the inbox
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
        pause = 0.2
        while True:
            try:
                return await self.answer(message.routing_key or "", message.body, message.user_id)
            except Unavailable as error:
                if not self._service.role.writable:
                    raise NotWritable(f"stopped waiting for the store: {error}", None) from error
                log.warning("config command waits for the event store: %s", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

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
                await self._admit(applied.position)
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
                "rejected-command",
                f"config command refused: {error}",
                {"command_id": command_id, "via": f"broker ({routing_key})"},
            )
        return refusal(command_id, error)

    async def _admit(self, position: int) -> None:
        """Answer a repeated command only when its first answer could have gone out: the first
        attempt may have stopped at the gate (no lease, the shadow not acknowledging)."""
        service = self._service
        if service.role.role == "master" and service.gate is not None:
            await service.gate.admit(position, service.role.master_url)

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
        return {"command_id": command.command_id, "ok": True, **result.as_dict()}

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
            "dead-lettered",
            f"config command dead-lettered: {reason}",
            {"message_id": message.message_id, "routing_key": message.routing_key or ""},
        )
        await message.reject(requeue=False)
