"""Instance-to-instance HTTP: signed requests, authenticated answers, and the peer client.

A request is signed (the cluster's peer-request key) over its timestamp, a fresh nonce, the
calling instance, method, path with query and the body's SHA-256, so a captured request cannot
be re-aimed at another path, carry another body or pass for another caller, and it is only
accepted within `WINDOW` seconds of its timestamp.

The answer is authenticated too (the peer-answer key) and bound to that one request: over the
request's signature, method and target, the status and the body's SHA-256. A JSON answer
carries its MAC in a header; an NDJSON stream ends with a trailer line that carries it, so a
stream cut short or spliced fails. Nothing a peer answered is used before its MAC verified: a
fake instance at a peer's URL (or anyone on the path) cannot feed a fork point, a history page
or a bootstrap image.
"""

from __future__ import annotations

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
TRAILER = "answer"  # the key of an NDJSON stream's last line

MAX_FIELD = 200  # header values a request signature covers: bounded before any work


def signature(
    secret: str, timestamp: str, nonce: str, instance: str, method: str, target: str, body: bytes
) -> str:
    message = keys.parts(
        timestamp, nonce, instance, method.upper(), target, hashlib.sha256(body).digest()
    )
    return keys.mac(secret, keys.PEER_REQUEST, message)


def sign(secret: str, instance: str, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    timestamp, nonce = f"{time.time():.3f}", secrets.token_hex(16)
    return {
        INSTANCE_HEADER: instance,
        TIME_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, timestamp, nonce, instance, method, target, body),
    }


def verify(
    secret: str | None,
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
    expected = signature(secret, timestamp, nonce, instance, method, target, body)
    if not _same(expected, given):
        raise Forbidden("bad cluster signature (different SHADOWLINE_CLUSTER_SECRET?)")
    return str(instance)


def _same(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected, given)


def answer_mac(
    secret: str, request_signature: str, method: str, target: str, status: int, digest: bytes
) -> str:
    """The MAC of an answer: bound to the request it answers and to its status and body."""
    message = keys.parts(request_signature, method.upper(), target, str(status), digest)
    return keys.mac(secret, keys.PEER_ANSWER, message)


class PeerRefused(ShadowlineError):
    """Raised when the peer answered a 4xx: it understood and said no (message from the peer)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


Rejected = Callable[[str], None]


class PeerClient:
    """Signed calls to another instance; every answer is authenticated before it is used.

    `on_rejected` hears of each answer that failed authentication (for the rejected-message
    alert); the call then raises Unauthenticated, which callers treat as the peer being away.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        instance: str,
        timeout: float | httpx.Timeout = 10.0,
        on_rejected: Rejected | None = None,
        max_answer: int = 256 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._instance = instance
        self._on_rejected = on_rejected
        self._max_answer = max_answer
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
        request.headers.update(sign(self._secret, self._instance, method, target, content))
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        return request, target

    def _refuse(self, what: str) -> Unauthenticated:
        reason = f"answer of {self.base_url} {what}: not authenticated with the cluster's keys"
        if self._on_rejected is not None:
            self._on_rejected(reason)
        return Unauthenticated(reason)

    def _check(
        self, request: httpx.Request, target: str, status: int, digest: bytes, given: Any
    ) -> None:
        expected = answer_mac(
            self._secret, request.headers[SIGNATURE_HEADER], request.method, target, status, digest
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
            response = await self._http.send(request, stream=True)
            try:
                content = await _read_bounded(response, self._max_answer)
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error
        if response.status_code >= 500 and ANSWER_HEADER not in response.headers:
            raise Unavailable(f"peer answered {response.status_code}")  # a proxy, an overload
        self._check(
            request,
            target,
            response.status_code,
            hashlib.sha256(content).digest(),
            response.headers.get(ANSWER_HEADER),
        )
        return _decode(response.status_code, content)

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        """An NDJSON answer's lines, once its trailer has authenticated all of them."""
        request, target = self._request("GET", path, params=params)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.is_error:
                    content = await _read_bounded(response, 1024 * 1024)
                    if response.status_code >= 500 and ANSWER_HEADER not in response.headers:
                        raise Unavailable(f"peer answered {response.status_code}")
                    self._check(
                        request,
                        target,
                        response.status_code,
                        hashlib.sha256(content).digest(),
                        response.headers.get(ANSWER_HEADER),
                    )
                    _decode(response.status_code, content)
                lines: list[bytes] = []
                size = 0
                async for text in response.aiter_lines():
                    size += len(text) + 1
                    if size > self._max_answer:
                        raise Unavailable(
                            f"answer of {self.base_url} exceeds {self._max_answer} bytes"
                        )
                    if text:
                        lines.append(text.encode())
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error
        trailer = _trailer(lines.pop() if lines else b"")
        hasher = hashlib.sha256()
        for line in lines:
            hasher.update(line + b"\n")
        self._check(request, target, response.status_code, hasher.digest(), trailer)
        return lines


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
