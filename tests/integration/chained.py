"""Chained events and stores for the database-guard tests: a log of given epochs, written
through the real EventStore (as the owner or as the least-privilege role)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from shadowline.adapters.db import create_engine
from shadowline.adapters.migrate import grant_app_role
from shadowline.adapters.store import EventStore
from shadowline.domain.events import GENESIS, Event, link, verify_chain

META = {"actor": "test", "request_id": "r-1"}


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(False)


@asynccontextmanager
async def login_role(url: str, *, granted: bool = True) -> AsyncIterator[str]:
    """A uniquely named LOGIN role, with the application's grants unless told otherwise."""
    role = f"sl_app_{uuid.uuid4().hex[:12]}"
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(f"CREATE ROLE {quoted(role)} LOGIN")
    finally:
        await owner.close()
    try:
        if granted:
            await grant_app_role(url, role)
        yield role
    finally:
        owner = await asyncpg.connect(url)
        try:
            # DROP OWNED BY revokes every privilege the role holds in this database.
            await owner.execute(f"DROP OWNED BY {quoted(role)}")
            await owner.execute(f"DROP ROLE {quoted(role)}")
        finally:
            await owner.close()


@asynccontextmanager
async def store_at(url: str) -> AsyncIterator[EventStore]:
    engine = create_engine(url, pool_size=2)
    store = EventStore(engine)
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()


def event(position: int, epoch: int, previous: bytes, type: str = "ConfigPut") -> Event:
    """A config change of one of three items (or an HA event), chained to `previous`."""
    config = type in ("ConfigPut", "ConfigDeleted")
    made = Event(
        id=uuid.uuid4(),
        position=position,
        epoch=epoch,
        type=type,
        kind="subaccount" if config else None,
        name=f"acme-{position % 3}" if config else None,
        version=position if config else None,
        data={"region": f"r{position}", "subaccount_id": "sa-1"} if type == "ConfigPut" else None,
        metadata=META,
        recorded_at=datetime.now(UTC),
    )
    return dataclasses.replace(made, chain=link(previous, made), signature=bytes(32))


def chained(start: int, epochs: Sequence[int], previous: bytes) -> list[Event]:
    """Events start, start+1, ... of the given epochs; the first of a newer epoch is its
    MasterPromoted, as a promotion writes it."""
    made: list[Event] = []
    for offset, epoch in enumerate(epochs):
        before = made[-1].epoch if made else epoch
        kind = "MasterPromoted" if epoch > before else "ConfigPut"
        made.append(event(start + offset, epoch, previous, kind))
        previous = made[-1].chain
    return made


async def write_log(store: EventStore, epochs: Sequence[int]) -> list[Event]:
    """Append a log of these epochs after the store's head, fencing each newer term first as
    a promotion does; returns the events."""
    head = await store.head()
    previous = await store.chain_at(head.position) or GENESIS
    written = chained(head.position + 1, epochs, previous)
    term = head.epoch
    for e in written:
        if e.epoch > max(term, 1):
            await store.fence(e.epoch)
        term = e.epoch
        await store.append([e], e.position - 1)
    return written


async def whole(store: EventStore) -> dict[str, object]:
    """Everything a guard must leave as it was: log, chain check, head, served state."""
    log = await store.read(0, 10_000)
    head = await store.head()
    return {
        "positions": [e.position for e in log],
        "chain_ok": verify_chain(GENESIS, log) is None,
        "head": (head.position, head.chain, head.epoch, head.fence_epoch),
        "current": await store.current(),
        "versions": await store.versions(),
        "quarantined": len(await store.quarantined()),
    }
