"""Instance-to-instance HTTP: signed requests, authenticated answers, and the peer client.

A request is signed (the cluster's peer-request key) over the cluster, its timestamp, a fresh
nonce, the calling instance, method, path with query and the body's SHA-256, so a captured
request cannot be re-aimed at another path or cluster, carry another body or pass for another
caller; it is accepted within `WINDOW` seconds of its timestamp and only once (`Nonces`).

The answer is authenticated too (the peer-answer key) and bound to that one request: over the
request's signature, method and target, the cluster and the answering instance, the status and
the body's SHA-256. A JSON answer carries its MAC in a header; an NDJSON stream ends with a
trailer line that carries it, so a stream cut short or spliced fails. Nothing a peer answered
is used before its MAC verified, and every call has a total deadline: a fake or slow instance
at a peer's URL (or anyone on the path) can neither feed a fork point, a history page or an
image, nor hold a caller for longer than the deadline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from shadowline.domain import keys
from shadowline.domain.errors import Forbidden, ShadowlineError, Unauthenticated, Unavailable

WINDOW = 30.0
INSTANCE_HEADER = "X-Shadowline-Instance"
TIME_HEADER = "X-Shadowline-Timestamp"
NONCE_HEADER = "X-Shadowline-Nonce"
SIGNATURE_HEADER = "X-Shadowline-Signature"
ANSWER_HEADER = "X-Shadowline-Answer"
ANSWERED_BY_HEADER = "X-Shadowline-Answered-By"
TRAILER = "answer"  # the key of an NDJSON stream's last line

MAX_FIELD = 200  # header values a request signature covers: bounded before any work


def signature(
    secret: str,
    cluster: str,
    timestamp: str,
    nonce: str,
    instance: str,
    method: str,
    target: str,
    body: bytes,
) -> str:
    message = keys.parts(
        cluster, timestamp, nonce, instance, method.upper(), target, hashlib.sha256(body).digest()
    )
    return keys.mac(secret, keys.PEER_REQUEST, message)


def sign(
    secret: str, cluster: str, instance: str, method: str, target: str, body: bytes = b""
) -> dict[str, str]:
    timestamp, nonce = f"{time.time():.3f}", secrets.token_hex(16)
    return {
        INSTANCE_HEADER: instance,
        TIME_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(
            secret, cluster, timestamp, nonce, instance, method, target, body
        ),
    }


def verify(
    secret: str | None,
    cluster: str,
    headers: Any,
    method: str,
    target: str,
    body: bytes,
    now: float | None = None,
) -> str:
    """The calling instance's name, if the request is signed with our cluster's keys."""
    if not secret:
        raise Forbidden("this instance has no SHADOWLINE_CLUSTER_SECRET: HA calls are refused")
    timestamp, given = headers.get(TIME_HEADER), headers.get(SIGNATURE_HEADER)
    nonce, instance = headers.get(NONCE_HEADER) or "", headers.get(INSTANCE_HEADER) or ""
    if not timestamp or not given:
        raise Forbidden("instance-to-instance call without a cluster signature")
    if max(len(timestamp), len(nonce), len(instance)) > MAX_FIELD:
        raise Forbidden("oversized cluster signature headers")
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError as error:
        raise Forbidden("malformed cluster signature timestamp") from error
    if not age <= WINDOW:  # also refuses nan
        raise Forbidden(f"cluster signature is {age:.0f}s old (window {WINDOW:.0f}s)")
    expected = signature(secret, cluster, timestamp, nonce, instance, method, target, body)
    if not _same(expected, given):
        raise Forbidden("bad cluster signature (different SHADOWLINE_CLUSTER_SECRET?)")
    return str(instance)


class Nonces:
    """The nonces of the requests accepted within the window: a replayed request is refused
    (an attacker on the path could otherwise replay a genuine ack, or a promote, and get an
    authenticated answer to it). Bounded: when full, new requests are refused, not admitted."""

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: dict[str, float] = {}
        self._limit = limit

    def fresh(self, nonce: str, now: float) -> bool:
        # Oldest first (insertion order): forget what is past any request's window, cheaply.
        while self._seen:
            oldest = next(iter(self._seen))
            if now - self._seen[oldest] <= 2 * WINDOW:
                break
            del self._seen[oldest]
        if nonce in self._seen or len(self._seen) >= self._limit:
            return False
        self._seen[nonce] = now
        return True


def _same(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected, given)


def answer_mac(
    secret: str,
    cluster: str,
    answered_by: str,
    request_signature: str,
    method: str,
    target: str,
    status: int,
    digest: bytes,
) -> str:
    """The MAC of an answer: bound to the request it answers, the cluster and the instance that
    answered, and to its status and body."""
    message = keys.parts(
        cluster, answered_by, request_signature, method.upper(), target, str(status), digest
    )
    return keys.mac(secret, keys.PEER_ANSWER, message)


class PeerRefused(ShadowlineError):
    """Raised when the peer answered a 4xx: it understood and said no (message from the peer)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


Rejected = Callable[[str], None]


class PeerClient:
    """Signed calls to another instance; every answer is authenticated before it is used.

    `peer`, when given, is the instance that must have answered (a genuine instance of the
    cluster at the wrong address is not it). `on_rejected` hears of each answer that failed
    authentication (for the rejected-message alert); the call then raises Unauthenticated,
    which callers treat as the peer being away. `deadline` bounds a whole call, and ten times
    it a whole stream, however slowly the peer sends.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        instance: str,
        *,
        cluster: str,
        peer: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        deadline: float = 30.0,
        on_rejected: Rejected | None = None,
        max_answer: int = 1024 * 1024,
        max_stream: int = 512 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._cluster = cluster
        self._instance = instance
        self._peer = peer
        self._deadline = deadline
        self._on_rejected = on_rejected
        self._max_answer = max_answer
        self._max_stream = max_stream
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> tuple[httpx.Request, str]:
        content = b"" if body is None else orjson.dumps(body)
        request = self._http.build_request(method, path, params=params, content=content)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.headers["Authorization"] = f"Basic {token}"
        target = request.url.raw_path.decode()
        signed = sign(self._secret, self._cluster, self._instance, method, target, content)
        request.headers.update(signed)
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        return request, target

    def _refuse(self, what: str) -> Unauthenticated:
        reason = f"answer of {self.base_url} {what}: not authenticated with the cluster's keys"
        if self._on_rejected is not None:
            self._on_rejected(reason)
        return Unauthenticated(reason)

    def _check(
        self,
        request: httpx.Request,
        target: str,
        response: httpx.Response,
        digest: bytes,
        given: Any,
    ) -> None:
        answered_by = response.headers.get(ANSWERED_BY_HEADER, "")
        if self._peer is not None and answered_by != self._peer:
            raise self._refuse(f"{request.method} {target} (answered by {answered_by!r})")
        expected = answer_mac(
            self._secret,
            self._cluster,
            answered_by,
            request.headers[SIGNATURE_HEADER],
            request.method,
            target,
            response.status_code,
            digest,
        )
        if not _same(expected, given):
            raise self._refuse(f"{request.method} {target}")

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        request, target = self._request(method, path, body, params, auth)
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._http.send(request, stream=True)
                try:
                    content = await _read_bounded(response, self._max_answer)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error
        if response.status_code >= 500 and ANSWER_HEADER not in response.headers:
            raise Unavailable(f"peer answered {response.status_code}")  # a proxy, an overload
        digest = hashlib.sha256(content).digest()
        self._check(request, target, response, digest, response.headers.get(ANSWER_HEADER))
        return _decode(response.status_code, content)

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        """An NDJSON answer's lines, once its trailer has authenticated all of them. Split on
        b"\\n" only, as the server wrote them (a value may hold U+2028 or U+0085 raw)."""
        request, target = self._request("GET", path, params=params)
        try:
            async with asyncio.timeout(10 * self._deadline):  # a bootstrap image streams
                response = await self._http.send(request, stream=True)
                try:
                    if response.is_error:
                        await self._error(request, target, response)
                    content = await _read_bounded(response, self._max_stream)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error
        body, _, last = content.rstrip(b"\n").rpartition(b"\n")
        body += b"\n" if body else b""
        digest = hashlib.sha256(body).digest()
        self._check(request, target, response, digest, _trailer(last))
        return [line for line in body.split(b"\n") if line]

    async def _error(self, request: httpx.Request, target: str, response: httpx.Response) -> None:
        content = await _read_bounded(response, self._max_answer)
        if response.status_code >= 500 and ANSWER_HEADER not in response.headers:
            raise Unavailable(f"peer answered {response.status_code}")
        digest = hashlib.sha256(content).digest()
        self._check(request, target, response, digest, response.headers.get(ANSWER_HEADER))
        _decode(response.status_code, content)
        raise Unavailable(f"peer answered {response.status_code}")


def _trailer(line: bytes) -> Any:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return doc.get(TRAILER) if isinstance(doc, dict) and len(doc) == 1 else None


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise httpx.DecodingError(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(status: int, content: bytes) -> Any:
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = {"error": content[:200].decode(errors="replace")}
    if status >= 500:
        raise Unavailable(f"peer answered {status}: {body}")
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else str(body)
        raise PeerRefused(status, str(message))
    return body
