"""HTTP Basic authentication against the instance's own users, with roles.

The users table is small and local; it is re-read every second, so a removed user or a changed
password takes effect within a second without a database round trip per request.

Failed logins are limited per source address (`LoginThrottle`): after `max_failures` within
`window` seconds the source is answered 429 with Retry-After, without an Argon2 check, until the
window ends. Credentials that passed a check within the last minute still pass (they need no
Argon2 and guess nothing), so a client behind the same address as an attacker keeps working.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from shadowline.application.ports.users import PasswordCheck, Users
from shadowline.domain.errors import Forbidden, ShadowlineError, Unauthorized
from shadowline.domain.users import User

log = logging.getLogger(__name__)

# What each role may do; a role includes the rights of those after it.
RANK = {"viewer": 0, "auditor": 1, "admin": 2}


class TooManyFailures(ShadowlineError):
    """Raised when a source address failed to log in too often within the window (429)."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins from this address: retry in {retry_after} s")


class LoginThrottle:
    """Failed logins per source address in a fixed window from the first failure; at most
    `max_sources` addresses are tracked (the least recently failing one is forgotten)."""

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 60.0,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window, self.max_sources = max_failures, window, max_sources
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # (since, count)

    def _current(self, source: str) -> tuple[float, int] | None:
        entry = self._failures.get(source)
        if entry is not None and self._clock() - entry[0] >= self.window:
            del self._failures[source]
            return None
        return entry

    def check(self, source: str) -> None:
        """Raise TooManyFailures while `source` has used up its failures in this window."""
        entry = self._current(source)
        if entry is not None and entry[1] >= self.max_failures:
            raise TooManyFailures(max(1, math.ceil(entry[0] + self.window - self._clock())))

    def failed(self, source: str) -> None:
        since, count = self._current(source) or (self._clock(), 0)
        self._failures[source] = (since, count + 1)
        self._failures.move_to_end(source)
        if count + 1 == self.max_failures:
            log.warning(
                "%d failed logins from %s within %.0f s: refused until the window ends",
                count + 1,
                source,
                self.window,
            )
        while len(self._failures) > self.max_sources:
            self._failures.popitem(last=False)

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)

    def __len__(self) -> int:
        return len(self._failures)


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header or not header.lower().startswith("basic "):
        raise Unauthorized("HTTP Basic credentials required")
    try:
        user, sep, password = (
            base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        )
    except ValueError as error:  # binascii.Error, UnicodeDecodeError, or non-ASCII base64
        raise Unauthorized("malformed Basic credentials") from error
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    return user, password


class Authenticator:
    def __init__(
        self,
        users: Users,
        passwords: PasswordCheck,
        dummy_hash: Callable[[], Any],
        refresh_every: float = 1.0,
        throttle: LoginThrottle | None = None,
    ) -> None:
        """`passwords` checks with a cache (adapters.passwords.VerifiedCache); `dummy_hash`
        makes the hash an unknown user is checked against, once, ahead of the first one."""
        self._users = users
        self._refresh_every = refresh_every
        self._by_name: dict[str, User] = {}
        self._cache = passwords
        self._dummy_hash = dummy_hash
        # Not `throttle or ...`: a throttle tracking no address yet has len() 0, so is falsy.
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._dummy_ready = False

    async def refresh(self) -> None:
        self._by_name = {u.name: u for u in await self._users.all()}
        if not self._dummy_ready:  # made before the first unknown user, not while it waits
            await asyncio.to_thread(self._dummy_hash)
            self._dummy_ready = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            try:
                await self.refresh()
            except Exception as error:  # keep the last good copy; the next tick tries again
                log.warning("could not refresh users: %s", error)

    def user(self, name: str) -> User | None:
        """The current user of that name (from the copy refreshed every second), or None."""
        return self._by_name.get(name)

    async def authenticate(self, header: str | None, needs: str, source: str = "") -> User:
        """The user of these Basic credentials holding at least role `needs`, checked for
        `source` (the client's address): Unauthorized, TooManyFailures or Forbidden."""
        name, password = parse_basic(header)
        user = self._by_name.get(name)
        if user is None or not self._cache.known(name, user.password_hash, password):
            self.throttle.check(source)
            # An unknown name is checked against a dummy hash: the same cost as a wrong password.
            stored = user.password_hash if user is not None else None
            verified = await self._cache.verify(name, stored, password)
            if user is None or not verified:
                self.throttle.failed(source)
                raise Unauthorized("unknown user or wrong password")
            # Only a check that ran Argon2 resets: a client whose credentials are cached would
            # otherwise give an attacker behind the same address new tries every request.
            self.throttle.succeeded(source)
        if RANK[user.role] < RANK[needs]:
            raise Forbidden(f"role {user.role!r} may not do this (needs {needs!r})")
        return user
