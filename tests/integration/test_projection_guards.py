"""The writing functions, called with the least-privilege role's credentials: the served state
and the head follow from the events appended, a bootstrap lands only in an empty store, the
history below it only below it, and the append keeps its compare-and-set."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from shadowline.adapters.store import EventStore
from shadowline.domain.errors import ConcurrentWriter
from shadowline.domain.events import GENESIS, link
from tests.integration.chained import (
    as_role,
    chained,
    event,
    login_role,
    store_at,
    whole,
    write_log,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def role(db_url: str) -> AsyncIterator[str]:
    async with login_role(db_url) as name:
        yield name


@pytest.fixture
async def app_store(db_url: str, role: str) -> AsyncIterator[EventStore]:
    async with store_at(as_role(db_url, role)) as store:
        yield store


async def test_the_served_rows_are_derived_from_the_appended_events(app_store: EventStore) -> None:
    first = event(1, 1, GENESIS)  # acme-1 put
    deleted = dataclasses.replace(event(2, 1, first.chain, "ConfigDeleted"), name="acme-1")
    deleted = dataclasses.replace(deleted, chain=link(first.chain, deleted))
    other = event(3, 1, deleted.chain)  # acme-0 put

    await app_store.append([first, deleted, other], 0)

    versions = await app_store.versions()
    assert (
        versions[("subaccount", "acme-1")].version,
        versions[("subaccount", "acme-1")].live,
    ) == (
        2,
        False,
    )
    assert (await app_store.current()) == (3, {"subaccount/acme-0": other.data})
    head = await app_store.head()
    assert (head.position, head.chain, head.epoch) == (3, other.chain, 1)


@pytest.mark.parametrize(
    "epochs",
    [[3], [1, 3], [0]],
    ids=["skips-a-term", "skips-inside-the-batch", "epoch-zero-behind-the-head"],
)
async def test_an_append_outside_the_term_rule_is_refused_and_changes_nothing(
    app_store: EventStore, epochs: list[int]
) -> None:
    written = await write_log(app_store, [1, 1])
    before = await whole(app_store)

    with pytest.raises(ConcurrentWriter, match="refused by the database"):
        await app_store.append(chained(3, epochs, written[-1].chain), 2)

    assert await whole(app_store) == before


async def test_an_append_of_an_older_term_than_the_heads_is_refused(app_store: EventStore) -> None:
    written = await write_log(app_store, [1, 2])  # fenced at 2, head in 2
    older = chained(3, [1], written[-1].chain)

    with pytest.raises(ConcurrentWriter):
        await app_store.append(older, 2)


async def test_an_append_whose_positions_leave_a_gap_is_refused(app_store: EventStore) -> None:
    written = await write_log(app_store, [1])
    before = await whole(app_store)

    with pytest.raises(ConcurrentWriter, match="gap-free"):
        await app_store.append(chained(3, [1], written[-1].chain), 1)
    with pytest.raises(ConcurrentWriter, match="gap-free"):
        batch = chained(2, [1, 1], written[-1].chain)
        await app_store.append([batch[1], batch[0]], 1)

    assert await whole(app_store) == before


async def test_an_append_with_fields_missing_for_some_events_is_refused(
    db_url: str, role: str
) -> None:
    app = await asyncpg.connect(as_role(db_url, role))
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="one value of each field"):
            await app.fetchval(
                "SELECT shadowline_append(0, ARRAY[1::bigint, 2], ARRAY[gen_random_uuid()], "
                "ARRAY[1, 1], ARRAY['Probe', 'Probe'], ARRAY[NULL::text, NULL], "
                "ARRAY[NULL::text, NULL], ARRAY[NULL::int, NULL], ARRAY[NULL::jsonb, NULL], "
                "ARRAY['{}'::jsonb, '{}'], ARRAY[now(), now()], "
                "ARRAY[decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')], "
                "ARRAY[NULL::bytea, NULL])"
            )
        assert await app.fetchval("SELECT position FROM store_head") == 0
    finally:
        await app.close()


async def test_two_appends_at_the_same_head_commit_exactly_one(app_store: EventStore) -> None:
    written = await write_log(app_store, [1])
    a = chained(2, [1, 1], written[-1].chain)
    b = chained(2, [1], written[-1].chain)

    results = await asyncio.gather(
        app_store.append(a, 1), app_store.append(b, 1), return_exceptions=True
    )

    assert sorted(type(r).__name__ for r in results) == ["ConcurrentWriter", "NoneType"]
    head = await app_store.head()
    assert head.position in (2, 3)
    assert [e.position for e in await app_store.read(0, 10)] == list(range(1, head.position + 1))


# -- bootstrap and backfill --------------------------------------------------------------------


async def test_a_bootstrap_image_lands_only_in_an_empty_store(
    db_factory: Callable[[], Awaitable[str]], role: str, app_store: EventStore
) -> None:
    master_url = await db_factory()
    async with store_at(master_url) as master:
        history = await write_log(master, [1, 1, 1, 1])
        image = await master.image()
    written = await write_log(app_store, [1])
    before = await whole(app_store)

    with pytest.raises(ConcurrentWriter, match="cannot be bootstrapped"):
        await app_store.install(image)

    assert await whole(app_store) == before
    assert written[0].position == 1 and history[-1].position == image.position


async def test_the_backfill_copies_only_the_history_below_the_image_and_completes_it_whole(
    db_factory: Callable[[], Awaitable[str]],
) -> None:
    master_url, shadow_url = await db_factory(), await db_factory()
    async with (
        login_role(shadow_url) as shadow_role,
        store_at(master_url) as master,
        store_at(as_role(shadow_url, shadow_role)) as s,
    ):
        history = await write_log(master, [1] * 5)
        image = await master.image()
        await s.install(image)
        later = chained(6, [1], history[-1].chain)
        await s.append(later, 5)

        with pytest.raises(IntegrityError, match="positions 1 to 5"):
            await s.backfill(later, 5)
        await s.backfill(history[:3], 5)
        with pytest.raises(IntegrityError, match="not complete"):
            await s.backfill([], 0)
        assert (await s.head()).base_position == 5

        await s.backfill(history[3:], 0)

        head = await s.head()
        assert (head.position, head.base_position) == (6, 0)
        assert [e.chain for e in await s.read(0, 10)] == [e.chain for e in [*history, *later]]
        assert (await s.current()) == (6, {**image.state, "subaccount/acme-0": later[0].data})
