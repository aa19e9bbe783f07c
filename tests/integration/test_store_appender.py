"""The connection the appends hold (adapters.store): what it commits is durable and visible
to every other connection when the call returns, a lost connection fails one append as
Unavailable and the next one reconnects, and a fence reaches the held connection too."""

from __future__ import annotations

import asyncpg
import pytest

from shadowline.adapters.store import EventStore
from shadowline.domain.errors import ConcurrentWriter, Unavailable
from tests.integration.chained import chained, store_at, whole, write_log

pytestmark = pytest.mark.integration


async def _appender_pid(store: EventStore, url: str) -> int:
    """The server process of the appends' connection: the one idle connection left after an
    append, once every read has given its connection back."""
    other = await asyncpg.connect(url)
    try:
        own = await other.fetchval("SELECT pg_backend_pid()")
        pids = await other.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1"
            " AND backend_type = 'client backend'",
            own,
        )
    finally:
        await other.close()
    held = store._appender
    assert held is not None
    pid = held[1].get_server_pid()
    assert pid in {r["pid"] for r in pids}
    return int(pid)


async def test_an_acknowledged_append_is_committed_for_every_other_connection(
    db_url: str,
) -> None:
    async with store_at(db_url) as store:
        written = await write_log(store, [1, 1, 1])
        other = await asyncpg.connect(db_url)
        try:
            assert await other.fetchval("SELECT max(position) FROM events") == 3
            assert await other.fetchval("SELECT position FROM store_head") == 3
        finally:
            await other.close()
        assert store._appender is not None and not store._appender[1].is_in_transaction()
        assert [e.position for e in written] == [1, 2, 3]


async def test_a_lost_connection_fails_one_append_and_the_next_one_reconnects(
    db_url: str,
) -> None:
    async with store_at(db_url) as store:
        written = await write_log(store, [1])
        pid = await _appender_pid(store, db_url)
        killer = await asyncpg.connect(db_url)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid) is True
        finally:
            await killer.close()

        second = chained(2, [1], written[-1].chain)
        with pytest.raises(Unavailable):
            await store.append(second, 1)
        assert store._appender is None  # dropped, never reused
        await store.append(second, 1)
        assert (await store.head()).position == 2
        assert (await whole(store))["chain_ok"] is True


async def test_a_fence_refuses_the_next_append_on_the_held_connection(db_url: str) -> None:
    async with store_at(db_url) as store:
        written = await write_log(store, [1])
        assert store._appender is not None
        await store.fence(2)  # a newer term, as a promotion elsewhere would fence this one
        with pytest.raises(ConcurrentWriter):
            await store.append(chained(2, [1], written[-1].chain), 1)
        assert (await store.head()).position == 1
