"""The one mapping of errors (entrypoints.errors): the status and body DESIGN.md gives each
error, and the same bytes whether HTTP answers or a broker reply does."""

from __future__ import annotations

import orjson
import pytest

from shadowline.application.auth import TooManyFailures
from shadowline.domain.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotAcknowledged,
    NotFound,
    NotWritable,
    Unauthorized,
    Unavailable,
    VersionConflict,
)
from shadowline.entrypoints.amqp.command_reader import refusal
from shadowline.entrypoints.errors import BodyTooLarge, MalformedBody, UnsupportedBody, refusal_of
from shadowline.entrypoints.web import error_response

CASES = [
    (MalformedBody([FieldError("$", "malformed JSON: x")]), 400),
    (InvalidInput([FieldError("$.region", "required")]), 422),
    (VersionConflict("subaccount/eu10", 3, 4), 409),
    (AlreadyExists("user alice exists"), 409),
    (Conflict("command_id reused"), 409),
    (NotFound("subaccount/eu10 does not exist"), 404),
    (NotWritable("this instance is shadow", "http://m:8080"), 503),
    (NotAcknowledged("the shadow did not acknowledge this write", "http://m:8080"), 503),
    (TooManyFailures(7), 429),
    (Unauthorized("log in first"), 401),
    (Forbidden("role 'viewer' may not do this"), 403),
    (BodyTooLarge(), 413),
    (BodyTooLarge("request body larger than 1024 bytes"), 413),
    (UnsupportedBody("state-changing calls take application/json bodies, not 'text/plain'"), 415),
    (Unavailable("event store unavailable"), 503),
    (RuntimeError("a bug"), 500),
]


@pytest.mark.parametrize(("error", "status"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_an_error_gets_the_same_status_and_body_over_http_and_in_a_broker_reply(
    error: Exception, status: int
) -> None:
    refused = refusal_of(error)
    response = error_response(error)
    reply = refusal("c-1", error)
    assert (refused.status, response.status_code, reply["status"]) == (status, status, status)
    assert response.body == orjson.dumps(refused.body)
    assert {k: v for k, v in reply.items() if k not in ("command_id", "ok", "status")} == (
        refused.body
    )


def test_the_bodies_are_the_ones_design_md_fixes() -> None:
    assert refusal_of(InvalidInput([FieldError("$.region", "required")])).body == {
        "error": "invalid input",
        "errors": [{"path": "$.region", "message": "required"}],
    }
    assert refusal_of(VersionConflict("subaccount/eu10", 3, 4)).body["expected"] == 3
    assert refusal_of(NotWritable("shadow", "http://m:8080")).body["master"] == "http://m:8080"
    assert refusal_of(Unavailable("down")).body == {"error": "down", "master": None}
    assert refusal_of(BodyTooLarge()).body == {"error": "request body too large"}
    assert refusal_of(RuntimeError("secret detail")).body == {
        "error": "internal error: RuntimeError"
    }


def test_only_http_answers_carry_the_headers_of_a_challenge_or_a_wait() -> None:
    assert refusal_of(Unauthorized("x")).headers == {"WWW-Authenticate": 'Basic realm="shadowline"'}
    assert refusal_of(TooManyFailures(7)).headers == {"Retry-After": "7"}
    assert refusal_of(Unavailable("x")).headers == {"Retry-After": "1"}
    assert error_response(Unavailable("x")).headers["Retry-After"] == "1"


def test_a_write_stored_but_not_acknowledged_is_never_answered_as_refused() -> None:
    """The chaos run's finding: such writes were 503 {error, master} without Retry-After, the
    shape a client reads as "not done here, go to the master", yet they were in both stores.
    Now Retry-After and `outcome: unknown` say: look before sending it again."""
    import httpx

    from shadowline.client.plans import refused_here

    found = refusal_of(NotAcknowledged("the lease ran out", "http://m:8080"))
    assert found.status == 503 and found.headers == {"Retry-After": "1"}
    assert found.body["outcome"] == "unknown" and found.body["master"] == "http://m:8080"
    response = httpx.Response(503, headers=found.headers, content=orjson.dumps(found.body))
    assert refused_here(response) == (False, None)
    plain = refusal_of(NotWritable("this instance is shadow", "http://m:8080"))
    assert "outcome" not in plain.body and not plain.headers
