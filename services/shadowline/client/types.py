"""What the instance answers, as types: TypedDicts, so a result is still the plain JSON dict the
API sent (printable, comparable, indexable as before) and mypy knows its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

Json = dict[str, Any]


class ClientError(Exception):
    """Raised when the instance answers with an error status; carries the status and body."""

    def __init__(self, status: int, body: Any, via: str = "HTTP") -> None:
        self.status, self.body = status, body
        message = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"{via} {status}: {message or body}")

    @property
    def errors(self) -> list[FieldProblem]:
        """One entry per invalid field (422), else empty."""
        found = self.body.get("errors") if isinstance(self.body, dict) else None
        return list(found or [])


class CommandRefused(ClientError):
    """Raised when the master answers a config command published on the broker with ok=false;
    `status` is the HTTP status the same request would have got."""

    def __init__(self, reply: ReplyRefused) -> None:
        super().__init__(reply["status"], dict(reply), via="refused")
        self.reply = reply


class FieldProblem(TypedDict):
    path: str
    message: str


class Written(TypedDict):
    """PUT and DELETE /config/{kind}/{name}; position is null for a local-only kind."""

    kind: str
    name: str
    version: int
    position: int | None
    epoch: int


class Item(TypedDict):
    value: Any
    version: int


class ConfigState(TypedDict):
    """GET /config: the items ("<kind>/<name>": value) right after `position`."""

    position: int
    items: dict[str, Any]
    local: NotRequired[dict[str, Any]]  # only for the current state


class Health(TypedDict):
    instance: str
    role: str
    epoch: int
    position: int


# -- config commands over the broker (schemas/commands/config-*.json) ---------------------------


class ReplyApplied(TypedDict):
    command_id: str
    ok: Literal[True]
    kind: str
    name: str
    version: int
    position: int
    epoch: int
    duplicate: NotRequired[bool]  # answered from the log: the command_id was applied before


class ReplyRefused(TypedDict):
    command_id: str | None
    ok: Literal[False]
    status: int
    error: str
    errors: NotRequired[list[FieldProblem]]
    expected: NotRequired[int | None]
    version: NotRequired[int | None]
    master: NotRequired[str | None]


ConfigReply = ReplyApplied | ReplyRefused


@dataclass(frozen=True, slots=True)
class MonitoringMessage:
    """One message of shadowline.<cluster>.monitoring (schemas/monitoring/*.json)."""

    routing_key: str
    body: Json

    @property
    def kind(self) -> str:
        """heartbeat, role, alert, failover or config: the routing key's first word."""
        return self.routing_key.split(".", 1)[0]
