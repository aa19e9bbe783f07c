"""HTTP Basic authentication against the instance's own users, with roles.

The users table is small and local; it is re-read every second, so a removed user or a changed
password takes effect within a second without a database round trip per request.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from shadowline.adapters.local import User, Users
from shadowline.adapters.passwords import VerifiedCache
from shadowline.domain.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

# What each role may do; a role includes the rights of those after it.
RANK = {"viewer": 0, "auditor": 1, "admin": 2}


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
    def __init__(self, users: Users, refresh_every: float = 1.0) -> None:
        self._users = users
        self._refresh_every = refresh_every
        self._by_name: dict[str, User] = {}
        self._cache = VerifiedCache()

    async def refresh(self) -> None:
        self._by_name = {u.name: u for u in await self._users.all()}

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

    async def authenticate(self, header: str | None, needs: str) -> User:
        name, password = parse_basic(header)
        user = self._by_name.get(name)
        if user is None or not await self._cache.verify(name, user.password_hash, password):
            raise Unauthorized("unknown user or wrong password")
        if RANK[user.role] < RANK[needs]:
            raise Forbidden(f"role {user.role!r} may not do this (needs {needs!r})")
        return user
