"""Password hashing with Argon2id (memory-hard), and a cache of recent successful checks.

Argon2 costs tens of milliseconds and 64 MiB by design; paying that on every HTTP request would
cap an instance at a few dozen writes per second. A successful check is remembered under a keyed
hash of the password (the key lives only in this process), for at most `ttl` seconds and only
while the user's stored hash is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class VerifiedCache:
    def __init__(self, ttl: float = 60.0) -> None:
        self._key = os.urandom(32)
        self._ttl = ttl
        self._seen: dict[tuple[str, bytes, str], float] = {}

    def _token(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    async def verify(self, user: str, stored_hash: str, password: str) -> bool:
        entry = (user, self._token(password), stored_hash)
        now = time.monotonic()
        if self._seen.get(entry, 0.0) > now:
            return True
        ok = await asyncio.to_thread(verify_password, stored_hash, password)
        if ok:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[entry] = now + self._ttl
        return ok
