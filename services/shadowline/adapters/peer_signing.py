"""The signatures of instance-to-instance HTTP: a request's (peer-request key) and its answer's
(peer-answer key), and the nonces that make a request count once. See adapters.peer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from shadowline.domain import keys
from shadowline.domain.errors import Forbidden

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
    if not same(expected, given):
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


def same(expected: str, given: object) -> bool:
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
