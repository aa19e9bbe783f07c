"""The one mapping from shadowline's exceptions to what a caller is told: a status and a body.

Pure (no web framework): the HTTP API renders it as a response (`entrypoints.web.error_response`),
and the broker's config commands put the same status and body in their reply, so a command is
refused exactly as PUT/DELETE would be (DESIGN.md fixes both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shadowline.application.auth import TooManyFailures
from shadowline.domain.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidInput,
    NotAcknowledged,
    NotFound,
    NotWritable,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    VersionConflict,
)


class MalformedBody(InvalidInput):
    """Raised when a request body is not JSON at all (400, not 422)."""


class BodyTooLarge(Exception):
    """Raised when a request or command body is over the size limit (413); the message, when
    given, says by how much."""


class UnsupportedBody(Exception):
    """Raised when a state-changing call declares a body that is not JSON (415)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a caller is told of an error: the status, the JSON body, and (HTTP only) headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _fields(error: InvalidInput) -> list[dict[str, Any]]:
    return [dict(e.__dict__) for e in error.errors]


def refusal_of(error: Exception) -> Refusal:
    """The status and body of an error; an unexpected one is a 500 naming its class only."""
    match error:
        case MalformedBody():
            return Refusal(400, {"error": str(error), "errors": _fields(error)})
        case InvalidInput():
            return Refusal(422, {"error": "invalid input", "errors": _fields(error)})
        case VersionConflict():
            return Refusal(
                409, {"error": str(error), "expected": error.expected, "version": error.actual}
            )
        case PreconditionFailed():
            return Refusal(412, {"error": str(error), "version": error.actual})
        case Conflict() if error.master_url:
            return Refusal(409, {"error": str(error), "master": error.master_url})
        case AlreadyExists() | Conflict():
            return Refusal(409, {"error": str(error)})
        case NotFound():
            return Refusal(404, {"error": str(error)})
        case NotAcknowledged():  # stored, not acknowledged: Retry-After says "look first"
            body = {"error": str(error), "master": error.master_url, "outcome": "unknown"}
            return Refusal(503, body, {"Retry-After": "1"})
        case NotWritable():
            return Refusal(503, {"error": str(error), "master": error.master_url})
        case TooManyFailures():
            return Refusal(429, {"error": str(error)}, {"Retry-After": str(error.retry_after)})
        case Unauthorized():
            challenge = {"WWW-Authenticate": 'Basic realm="shadowline"'}
            return Refusal(401, {"error": str(error)}, challenge)
        case Forbidden():
            return Refusal(403, {"error": str(error)})
        case BodyTooLarge():
            return Refusal(413, {"error": str(error) or "request body too large"})
        case UnsupportedBody():
            return Refusal(415, {"error": str(error)})
        case Unavailable():
            return Refusal(503, {"error": str(error), "master": None}, {"Retry-After": "1"})
        case _:
            return Refusal(500, {"error": f"internal error: {error.__class__.__name__}"})
