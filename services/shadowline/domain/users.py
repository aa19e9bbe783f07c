"""An instance's own users (local, never replicated) and the roles they may hold."""

from __future__ import annotations

from dataclasses import dataclass

from shadowline.domain.errors import FieldError, InvalidInput

ROLES = ("admin", "auditor", "viewer")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str


MAX_NAME, MAX_PASSWORD = 64, 1024


def name_problem(name: str) -> str | None:
    """Why a user name cannot be used, or None. HTTP Basic sends `name:password` and splits at
    the first ':', so a name with one could never log in; an empty one would be anybody's."""
    if not name.strip():
        return "a user name may not be empty"
    if ":" in name:
        return "a user name may not contain ':' (HTTP Basic separates name and password by it)"
    if len(name) > MAX_NAME:
        return f"a user name has at most {MAX_NAME} characters"
    if not name.isprintable() or name != name.strip():
        return "a user name may not contain control characters or start or end with spaces"
    return None


def password_problem(password: str) -> str | None:
    """Why a password cannot be used, or None."""
    if not password:
        return "the password may not be empty"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    return None


def check_credentials(name: str | None = None, password: str | None = None) -> None:
    """The one rule for users, whichever door they come in by (`shadowline users`, the admin
    from SHADOWLINE_ADMIN_PASSWORD): InvalidInput naming what is wrong."""
    problems = [
        FieldError(field, problem)
        for field, problem in (
            ("name", None if name is None else name_problem(name)),
            ("password", None if password is None else password_problem(password)),
        )
        if problem is not None
    ]
    if problems:
        raise InvalidInput(problems)
