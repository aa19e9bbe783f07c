"""A pure ASGI middleware that authenticates this instance's answers to signed requests.

A request that carries a cluster signature (another instance, a watchdog's probe) gets an
answer whose MAC is bound to that request (`adapters.peer.answer_mac`): in a header for a JSON
answer (buffered: these are small), in a trailer line for an NDJSON stream (hashed as it goes,
so a bootstrap image still streams). The request's own signature is checked by the routes that
act on it; an answer to an unchecked one (`/health`) only ever vouches for what this instance
really answered, to that one request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shadowline.adapters import peer

_SIGNATURE = peer.SIGNATURE_HEADER.lower().encode()
_NDJSON = b"application/x-ndjson"


class PeerAnswers:
    def __init__(self, app: ASGIApp, secret: Callable[[], str | None]) -> None:
        self.app = app
        self._secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secret = self._secret()
        signed = (
            dict(scope.get("headers") or ()).get(_SIGNATURE) if scope["type"] == "http" else None
        )
        if not secret or not signed or len(signed) > peer.MAX_FIELD:
            await self.app(scope, receive, send)
            return
        target = scope.get("raw_path", scope["path"].encode()).decode()
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode()

        def mac(status: int, digest: bytes) -> str:
            return peer.answer_mac(secret, signed.decode(), scope["method"], target, status, digest)

        await self.app(scope, receive, _Answer(send, mac))


class _Answer:
    """Wraps `send`: holds the response start until the MAC can be computed."""

    def __init__(self, send: Send, mac: Callable[[int, bytes], str]) -> None:
        self._send, self._mac = send, mac
        self._start: Message | None = None
        self._stream = False
        self._hasher = hashlib.sha256()
        self._body: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            headers = dict(message.get("headers") or ())
            self._stream = headers.get(b"content-type", b"").startswith(_NDJSON)
            if self._stream:  # the MAC goes into the last line: the headers can go now
                await self._send({**message, "headers": _without_length(message)})
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        chunk, more = message.get("body", b""), message.get("more_body", False)
        if self._stream:
            self._hasher.update(chunk)
            if not more:
                chunk += self._trailer()
            await self._send({**message, "body": chunk})
            return
        self._body.append(chunk)
        if not more:
            await self._flush()

    def _trailer(self) -> bytes:
        assert self._start is not None
        mac = self._mac(self._start["status"], self._hasher.digest())
        return orjson.dumps({peer.TRAILER: mac}) + b"\n"

    async def _flush(self) -> None:
        assert self._start is not None
        body = b"".join(self._body)
        mac = self._mac(self._start["status"], hashlib.sha256(body).digest())
        headers = [*_without_length(self._start), (b"content-length", str(len(body)).encode())]
        headers.append((peer.ANSWER_HEADER.lower().encode(), mac.encode()))
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


def _without_length(start: Message) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in start.get("headers") or () if k.lower() != b"content-length"]
