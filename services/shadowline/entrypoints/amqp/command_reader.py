"""Reading a config command off the broker, and the replies made without applying anything.

Pure: a delivery's routing key, body and user_id in, a `ConfigCommand` (or the refusal PUT/DELETE
would answer) out. The consumer (amqp.config_commands) applies what is read here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from shadowline.adapters.command_log import Applied
from shadowline.adapters.resources import schemas_dir
from shadowline.domain.errors import Conflict, FieldError, Forbidden, InvalidInput
from shadowline.domain.kinds import LOCAL_KINDS
from shadowline.entrypoints.errors import BodyTooLarge, MalformedBody, refusal_of
from shadowline.settings import GUEST

log = logging.getLogger(__name__)

VERBS = ("put", "delete")


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
        user = self._publisher(user_id)
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
            user,
        )

    def _publisher(self, user_id: str | None) -> str:
        # Who before what: an anonymous or unknown sender learns nothing more. RabbitMQ refuses
        # a user_id other than the connection's user, so user_id is who sent this.
        if not user_id:
            raise Forbidden("the command carries no user_id: publish it with user_id set")
        if user_id not in self._publishers:
            raise Forbidden(
                f"broker user {user_id!r} may not publish config commands here "
                "(SHADOWLINE_COMMAND_PUBLISHERS)"
            )
        return user_id

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
    refused = refusal_of(error)
    return {"command_id": command_id, "ok": False, "status": refused.status, **refused.body}


def applied_reply(command: ConfigCommand, result: dict[str, Any]) -> dict[str, Any]:
    """The reply to a command just applied: what PUT/DELETE answers, with its command_id."""
    return {"command_id": command.command_id, "ok": True, **result}


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
