"""The cache of password checks: concurrent first requests share one Argon2 check. No I/O."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shadowline.adapters import passwords
from shadowline.adapters.passwords import VerifiedCache, hash_password

STORED = hash_password("right")


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Argon2 check made, slowed down so that concurrent callers really overlap."""
    calls: list[str] = []
    lock = threading.Lock()
    real = passwords.verify_password

    def counted(stored_hash: str, password: str) -> bool:
        with lock:
            calls.append(password)
        threading.Event().wait(0.05)
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counted)
    return calls


async def test_concurrent_checks_of_the_same_credentials_share_one_argon2_check(
    argon2_calls: list[str],
) -> None:
    cache = VerifiedCache()
    results = await asyncio.gather(*(cache.verify("admin", STORED, "right") for _ in range(16)))
    assert results == [True] * 16
    assert argon2_calls == ["right"]
    assert await cache.verify("admin", STORED, "right")
    assert argon2_calls == ["right"]  # and the success is remembered afterwards


async def test_a_wrong_password_never_shares_the_check_of_the_right_one(
    argon2_calls: list[str],
) -> None:
    cache = VerifiedCache()
    results = await asyncio.gather(
        cache.verify("admin", STORED, "right"),
        cache.verify("admin", STORED, "wrong"),
        cache.verify("admin", STORED, "wrong"),
    )
    assert list(results) == [True, False, False]
    assert sorted(argon2_calls) == ["right", "wrong"]


async def test_a_failed_check_is_not_remembered(argon2_calls: list[str]) -> None:
    cache = VerifiedCache()
    assert not await cache.verify("admin", STORED, "wrong")
    assert not await cache.verify("admin", STORED, "wrong")
    assert argon2_calls == ["wrong", "wrong"]


async def test_a_caller_giving_up_does_not_cancel_the_check_others_wait_for(
    argon2_calls: list[str],
) -> None:
    cache = VerifiedCache()
    first = asyncio.create_task(cache.verify("admin", STORED, "right"))
    second = asyncio.create_task(cache.verify("admin", STORED, "right"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second
    assert first.cancelled()
    assert argon2_calls == ["right"]
