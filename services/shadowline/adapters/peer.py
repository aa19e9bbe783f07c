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
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from shadowline.adapters.peer_signing import (
    ANSWER_HEADER,
    ANSWERED_BY_HEADER,
    INSTANCE_HEADER,
    MAX_FIELD,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    TRAILER,
    WINDOW,
    Nonces,
    answer_mac,
    same,
    sign,
    signature,
    verify,
)
from shadowline.domain.errors import (
    PeerRefused,
    PeerUnreachable,
    ShadowlineError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "ANSWERED_BY_HEADER",
    "ANSWER_HEADER",
    "INSTANCE_HEADER",
    "MAX_FIELD",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "TIME_HEADER",
    "TRAILER",
    "WINDOW",
    "Nonces",
    "PeerClient",
    "PeerRefused",
    "answer_mac",
    "probe_health",
    "sign",
    "signature",
    "verify",
]

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
        verify: ssl.SSLContext | bool = True,
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
        # `verify`: the trust an https peer's certificate is checked against (adapters.tls).
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, verify=verify)

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
        if not same(expected, given):
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
            # Not connected at all: the request never left (a switch of roles relies on it).
            unreached = PeerUnreachable if isinstance(error, httpx.ConnectError) else Unavailable
            raise unreached(
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


async def probe_health(
    url: str,
    *,
    secret: str,
    caller: str,
    cluster: str,
    instance: str,
    within: float,
    on_rejected: Rejected | None = None,
    verify: ssl.SSLContext | bool = True,
) -> tuple[dict[str, Any] | None, str]:
    """GET /health of `instance` at `url`, signed, its answer authenticated: (the answer, "")
    or (None, what went wrong). A fake instance at the URL cannot pass for it (its answer fails
    and counts as none), nor can a genuine instance of another cluster; a slow answer is no
    answer: the probe never outlasts `within` seconds."""
    client = PeerClient(
        url,
        secret,
        caller,
        cluster=cluster,
        peer=instance,
        timeout=httpx.Timeout(within),
        deadline=within,
        on_rejected=on_rejected,
        max_answer=64 * 1024,
        verify=verify,
    )
    try:
        found = await client.call("GET", "/health")
    except ShadowlineError as error:
        return None, f"{error.__class__.__name__} {error}".strip()
    finally:
        await client.close()
    if isinstance(found, dict):
        return found, ""
    return None, "/health answered something other than a JSON object"
