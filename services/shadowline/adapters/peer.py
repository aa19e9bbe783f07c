"""Instance-to-instance HTTP: requests signed with the cluster secret, and the peer client.

A signature is HMAC-SHA256 over timestamp, method, path with query, and the body's SHA-256,
so a captured request cannot be re-aimed at another path or carry another body, and it is only
accepted within `WINDOW` seconds of its timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from shadowline.domain.errors import Forbidden, ShadowlineError, Unavailable

WINDOW = 30.0
INSTANCE_HEADER = "X-Shadowline-Instance"
TIME_HEADER = "X-Shadowline-Timestamp"
SIGNATURE_HEADER = "X-Shadowline-Signature"


def signature(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    message = "\n".join((timestamp, method.upper(), target, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, instance: str, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    timestamp = f"{time.time():.3f}"
    return {
        INSTANCE_HEADER: instance,
        TIME_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, method, target, body),
    }


def verify(
    secret: str | None,
    headers: Any,
    method: str,
    target: str,
    body: bytes,
    now: float | None = None,
) -> str:
    """The calling instance's name, if the request is signed with our cluster secret."""
    if not secret:
        raise Forbidden("this instance has no SHADOWLINE_CLUSTER_SECRET: HA calls are refused")
    timestamp, given = headers.get(TIME_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise Forbidden("instance-to-instance call without a cluster signature")
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError as error:
        raise Forbidden("malformed cluster signature timestamp") from error
    if age > WINDOW:
        raise Forbidden(f"cluster signature is {age:.0f}s old (window {WINDOW:.0f}s)")
    if not hmac.compare_digest(signature(secret, timestamp, method, target, body), given):
        raise Forbidden("bad cluster signature (different SHADOWLINE_CLUSTER_SECRET?)")
    return str(headers.get(INSTANCE_HEADER) or "")


class PeerRefused(ShadowlineError):
    """Raised when the peer answered a 4xx: it understood and said no (message from the peer)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class PeerClient:
    """Signed calls to the other instance of the pair."""

    def __init__(self, base_url: str, secret: str, instance: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._instance = instance
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
    ) -> httpx.Request:
        content = b"" if body is None else orjson.dumps(body)
        request = self._http.build_request(method, path, params=params, content=content)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.headers["Authorization"] = f"Basic {token}"
        target = request.url.raw_path.decode()
        request.headers.update(sign(self._secret, self._instance, method, target, content))
        if body is not None:
            request.headers["Content-Type"] = "application/json"
        return request

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.send(self._request(method, path, body, params, auth))
        except httpx.HTTPError as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error
        return _decode(response)

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
        """Stream an NDJSON answer line by line."""
        request = self._request("GET", path, params=params)
        try:
            response = await self._http.send(request, stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    _decode(response)
                async for line in response.aiter_lines():
                    if line:
                        yield line.encode()
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise Unavailable(
                f"peer {self.base_url} unreachable: {error.__class__.__name__}: {error}"
            ) from error


def _decode(response: httpx.Response) -> Any:
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = {"error": response.text[:200]}
    if response.status_code >= 500:
        raise Unavailable(f"peer answered {response.status_code}: {body}")
    if response.is_error:
        message = body.get("error") if isinstance(body, dict) else str(body)
        raise PeerRefused(response.status_code, str(message))
    return body
