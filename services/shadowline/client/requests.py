"""How each request of the instance's HTTP API is built (`Call`) and each answer read (`parse`),
once, for both `Client` and `AsyncClient` (client.http)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx
import orjson

from shadowline.client.types import (
    ClientError,
    ConfigState,
    Item,
    Json,
    Written,
)

T = TypeVar("T")
PAGE = 1000
# GET /ha/preflight makes signed calls of the instance's peer, one of which may take the 30 s
# deadline of such a call before the answer comes.
PREFLIGHT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request, and (as its type parameter) what its answer is."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    timeout: float | None = None  # None: the client's own

    def send_args(self) -> dict[str, Any]:
        return {"params": self.params, "headers": self.headers, "content": self.content}


def parse(response: httpx.Response) -> Any:
    """The JSON body, or ClientError for an error status (with the body, JSON or text)."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = response.text
    if response.is_error:
        raise ClientError(response.status_code, body)
    return body


def _write_headers(
    if_match: int | None, reason: str | None, create_only: bool = False
) -> dict[str, str]:
    headers = {}
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    if create_only:
        headers["If-None-Match"] = "*"
    if reason:
        headers["X-Reason"] = reason
    return headers


def _given(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class _Requests:
    """Every request of the API, built the same for both clients."""

    @staticmethod
    def put(
        kind: str,
        name: str,
        value: Any,
        if_match: int | None,
        reason: str | None,
        create_only: bool = False,
    ) -> Call[Written]:
        headers = {
            "Content-Type": "application/json",
            **_write_headers(if_match, reason, create_only),
        }
        return Call("PUT", f"/config/{kind}/{name}", headers=headers, content=orjson.dumps(value))

    @staticmethod
    def delete(kind: str, name: str, if_match: int | None, reason: str | None) -> Call[Written]:
        return Call("DELETE", f"/config/{kind}/{name}", headers=_write_headers(if_match, reason))

    @staticmethod
    def get(kind: str, name: str) -> Call[Item]:
        return Call("GET", f"/config/{kind}/{name}")

    @staticmethod
    def state(at: int | None, as_of: str | None) -> Call[ConfigState]:
        return Call("GET", "/config", params=_given(at=at, as_of=as_of))

    @staticmethod
    def diff(start: str, end: str | None) -> Call[Json]:
        return Call("GET", "/config/diff", params=_given(**{"from": start, "to": end}))

    @staticmethod
    def events(after: int, limit: int, wait: float, filters: dict[str, Any]) -> Call[Json]:
        """Answered with NDJSON, one event envelope (schemas/event.json) a line."""
        params = {"after": after, "limit": limit, **_given(**filters)}
        return Call("GET", "/events", params=params | ({"wait": wait} if wait else {}))

    @staticmethod
    def preflight() -> Call[Json]:
        return Call("GET", "/ha/preflight", timeout=PREFLIGHT_TIMEOUT)

    @staticmethod
    def json(method: str, path: str, body: Any = None) -> Call[Json]:
        content = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if content is not None else {}
        return Call(method, path, headers=headers, content=content)


R = _Requests


def _event_line(line: str | bytes) -> Json | None:
    # Plain dicts, not a TypedDict: callers pass events on as dict[str, Any] (the CLI's export).
    return cast(Json, orjson.loads(line)) if line else None


def _stream_timeout(wait: float) -> httpx.Timeout:
    return httpx.Timeout(wait + 30)  # the server holds a waiting request open for `wait` s
