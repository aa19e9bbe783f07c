"""A pure ASGI middleware: the one place that checks signed requests and authenticates answers.

A request that carries a cluster signature (another instance, a watchdog's probe) is verified
here, body and all, and admitted once (`adapters.peer.Nonces`): the caller's name is left in
the scope for the routes (`http_ha.Peer`), or why it failed. Only an answer to a verified,
fresh request gets a MAC, bound to that request, this cluster and this instance
(`adapters.peer.answer_mac`): in a header for a JSON answer (buffered: these are small), in a
trailer line for an NDJSON stream (hashed as it goes, so a bootstrap image still streams). So a
replayed or forged request never earns an authenticated answer, not even a refusal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shadowline.adapters import peer
from shadowline.domain.errors import Forbidden

_SIGNATURE = peer.SIGNATURE_HEADER.lower().encode()
_NDJSON = b"application/x-ndjson"
MAX_SIGNED_BODY = 1024 * 1024  # peer calls carry small JSON bodies; a bigger one is no peer's

CALLER = "shadowline.peer"  # scope key: the verified calling instance
REFUSAL = "shadowline.peer_refusal"  # scope key: why the signature did not verify


def target_of(scope: Scope) -> str:
    """The path with query, as the caller signed it."""
    # latin-1: any bytes decode (a signer sends ASCII; anything else just fails to verify)
    target = str(scope.get("raw_path", scope["path"].encode()).decode("latin-1"))
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return target


class PeerAnswers:
    def __init__(self, app: ASGIApp, secret: str | None, cluster: str, instance: str) -> None:
        self.app = app
        self._secret = secret
        self._cluster = cluster
        self._instance = instance
        self._nonces = peer.Nonces()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _SIGNATURE not in dict(scope.get("headers") or ()):
            await self.app(scope, receive, send)
            return
        body, more = await _body(receive)
        replay = _replay(body, more, receive)
        headers = Headers(scope=scope)
        try:
            if more:
                raise Forbidden(f"a signed request body over {MAX_SIGNED_BODY} bytes")
            caller = peer.verify(
                self._secret, self._cluster, headers, scope["method"], target_of(scope), body
            )
            if not self._nonces.fresh(headers.get(peer.NONCE_HEADER) or "", time.time()):
                raise Forbidden("this signed request was seen before (replayed)")
        except Forbidden as error:
            scope[REFUSAL] = str(error)  # the route answers 403, without a MAC
            await self.app(scope, replay, send)
            return
        scope[CALLER] = caller
        signed = headers[peer.SIGNATURE_HEADER]
        secret, cluster, me, method = self._secret, self._cluster, self._instance, scope["method"]
        assert secret is not None
        target = target_of(scope)

        def mac(status: int, digest: bytes) -> str:
            return peer.answer_mac(secret, cluster, me, signed, method, target, status, digest)

        await self.app(scope, replay, _Answer(send, mac, me))


async def _body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, up to MAX_SIGNED_BODY (more: True if there was more)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_SIGNED_BODY:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent or more:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


class _Answer:
    """Wraps `send`: holds the response start until the MAC can be computed."""

    def __init__(self, send: Send, mac: Callable[[int, bytes], str], me: str) -> None:
        self._send, self._mac, self._me = send, mac, me.encode()
        self._start: Message | None = None
        self._stream = False
        self._hasher = hashlib.sha256()
        self._body: list[bytes] = []

    def _headers(self, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        assert self._start is not None
        kept = [
            (k, v) for k, v in self._start.get("headers") or () if k.lower() != b"content-length"
        ]
        return [*kept, (peer.ANSWERED_BY_HEADER.lower().encode(), self._me), *extra]

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            headers = dict(message.get("headers") or ())
            self._stream = headers.get(b"content-type", b"").startswith(_NDJSON)
            if self._stream:  # the MAC goes into the last line: the headers can go now
                await self._send({**message, "headers": self._headers()})
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
        headers = self._headers(
            (b"content-length", str(len(body)).encode()),
            (peer.ANSWER_HEADER.lower().encode(), mac.encode()),
        )
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
