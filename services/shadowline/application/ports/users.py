"""What authentication needs: the instance's users and a password check (adapters.local.Users
and adapters.passwords.VerifiedCache satisfy these)."""

from __future__ import annotations

from typing import Protocol

from shadowline.domain.users import User


class Users(Protocol):
    async def all(self) -> list[User]: ...


class PasswordCheck(Protocol):
    """Argon2 checks with a cache of recent successes; an unknown user costs the same."""

    def known(self, user: str, stored_hash: str, password: str) -> bool: ...

    async def verify(self, user: str, stored_hash: str | None, password: str) -> bool: ...
