"""Password hashing with Argon2id (memory-hard), and a cache of recent successful checks.

Argon2 costs tens of milliseconds and 64 MiB by design; paying that on every HTTP request would
cap an instance at a few dozen writes per second. A successful check is remembered under a keyed
hash of the password (the key lives only in this process), for at most `ttl` seconds and only
while the user's stored hash is unchanged. Checks of the same credentials that arrive while one
is running (N clients connecting at once) wait for that one instead of each paying Argon2.

A name that is no user's is checked too, against a dummy hash of the same parameters: a wrong
password for an existing user cost 244 ms and an unknown user 1.8 ms, which told an attacker
which users exist.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import secrets
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


@functools.cache
def dummy_hash() -> str:
    """The hash an unknown user's password is checked against: the hasher's own parameters,
    of a random password nobody knows (made once, on the first unknown user)."""
    return _hasher.hash(secrets.token_urlsafe(32))


_Entry = tuple[str, bytes, str]  # (user, keyed hash of the password, stored hash)


class VerifiedCache:
    def __init__(self, ttl: float = 60.0) -> None:
        self._key = os.urandom(32)
        self._ttl = ttl
        self._seen: dict[_Entry, float] = {}
        self._running: dict[_Entry, asyncio.Task[bool]] = {}

    def _token(self, password: str) -> bytes:
        return hmac.digest(self._key, password.encode(), hashlib.sha256)

    def known(self, user: str, stored_hash: str, password: str) -> bool:
        """Whether these credentials passed a check within `ttl` (no Argon2 needed)."""
        return self._seen.get((user, self._token(password), stored_hash), 0.0) > time.monotonic()

    async def verify(self, user: str, stored_hash: str | None, password: str) -> bool:
        """Check a password; `stored_hash` None (no such user) costs the same and fails."""
        if stored_hash is None:
            stored_hash = await asyncio.to_thread(dummy_hash)  # made once, off the event loop
            await self.verify(user, stored_hash, password)
            return False
        entry = (user, self._token(password), stored_hash)
        if self._seen.get(entry, 0.0) > time.monotonic():
            return True
        check = self._running.get(entry)
        if check is None:
            check = asyncio.create_task(self._check(entry, stored_hash, password))
            self._running[entry] = check
            check.add_done_callback(functools.partial(self._finished, entry))
        # Shielded: one caller giving up (a client that hung up) must not cancel the others' check.
        return await asyncio.shield(check)

    async def _check(self, entry: _Entry, stored_hash: str, password: str) -> bool:
        ok = await asyncio.to_thread(verify_password, stored_hash, password)
        if ok:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[entry] = time.monotonic() + self._ttl
        return ok

    def _finished(self, entry: _Entry, check: asyncio.Task[bool]) -> None:
        if self._running.get(entry) is check:
            del self._running[entry]
        if not check.cancelled():
            check.exception()  # retrieved here too, in case every caller had given up
