"""One store contract, two stores: each test here runs against the in-memory twin and against
the real EventStore on a fresh PostgreSQL database of its own (marked integration), as
pyeventsourcing's persistence tests do for its recorders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shadowline.adapters.db import create_engine
from shadowline.adapters.migrate import drop_database
from shadowline.adapters.store import EventStore
from tests.conftest import _copy_template
from tests.twins import InMemoryStore, Store


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str | None:
    """None for the twin; the template database's name for PostgreSQL (a sync fixture, so a
    missing PostgreSQL skips only the tests that need it)."""
    if request.param == "memory":
        return None
    template: str = request.getfixturevalue("template_database")
    return template


@pytest.fixture
async def store(backend: str | None) -> AsyncIterator[Store]:
    if backend is None:
        yield InMemoryStore()
        return
    url = await _copy_template(backend)
    engine = create_engine(url, pool_size=2)
    store = EventStore(engine)
    try:
        yield store
    finally:
        await store.close()
        await engine.dispose()
        await drop_database(url)
