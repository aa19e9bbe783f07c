"""The store's probe on the real PostgreSQL: what an instance's heartbeat vouches for (its
database answers and would take a write)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shadowline.adapters.db import create_engine
from shadowline.adapters.store import EventStore
from shadowline.domain.errors import Unavailable


async def test_the_probe_passes_on_a_writable_database(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    store = EventStore(engine)
    try:
        await store.probe()
    finally:
        await store.close()
        await engine.dispose()


async def test_the_probe_connects_outside_the_pool_so_a_busy_pool_does_not_fail_it(
    db_url: str,
) -> None:
    engine = create_engine(db_url, pool_size=1)  # 1 + 1 overflow
    store = EventStore(engine)
    try:
        async with engine.connect(), engine.connect():  # every pooled connection (1 + 1) taken
            await asyncio.wait_for(store.probe(), 5)  # would wait the pool's 30 s otherwise
            await store.close()  # its connection dropped, as after a failed probe
            await asyncio.wait_for(store.probe(), 5)  # reconnected outside the pool
    finally:
        await store.close()
        await engine.dispose()


async def test_a_probe_whose_connection_the_server_ended_fails_once_then_reconnects(
    db_url: str,
) -> None:
    engine = create_engine(db_url, pool_size=1)
    store = EventStore(engine)
    url = make_url(db_url)
    try:
        await store.probe()
        admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                url.database,
            )
        finally:
            await admin.close()
        assert ended == 1  # the probe's own connection, held between probes
        with pytest.raises(Unavailable, match="event store unavailable"):
            await store.probe()
        await store.probe()  # a new connection
    finally:
        await store.close()
        await engine.dispose()


async def test_the_probe_fails_on_a_database_whose_transactions_are_read_only(db_url: str) -> None:
    url = make_url(db_url)
    admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username)
    try:  # this test's own database only: new sessions there start read-only
        await admin.execute(
            f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on'
        )
    finally:
        await admin.close()
    engine = create_engine(db_url, pool_size=1)
    store = EventStore(engine)
    try:
        with pytest.raises(Unavailable, match="read-only"):
            await store.probe()
    finally:
        await store.close()
        await engine.dispose()


async def test_the_probe_fails_when_no_server_answers() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(Unavailable, match="event store unavailable"):
            await EventStore(engine).probe()
    finally:
        await engine.dispose()
