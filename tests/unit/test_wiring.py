"""The real wiring (bootstrap.build_instance) over in-memory twins of the store and the broker:
a write goes through the one config service, the one writer and the commit gate into the store,
and is served back; no database or broker is reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest

from shadowline.adapters.broker import BrokerLink
from shadowline.adapters.db import create_engine
from shadowline.adapters.store import EventStore
from shadowline.bootstrap import Instance, build_instance
from shadowline.domain.commands import PutItem
from shadowline.domain.errors import NotWritable
from tests.conftest import make_settings
from tests.twins import InMemoryBroker, InMemoryStore

UNUSED = "postgresql+asyncpg://unused@127.0.0.1:1/unused"  # engines connect lazily: never here
META = {"actor": "test", "request_id": "r-1"}
MAPPING = {
    "virtual_host": "erp.internal",
    "virtual_port": 443,
    "internal_host": "10.0.0.1",
    "internal_port": 8443,
    "protocol": "HTTPS",
}


@asynccontextmanager
async def wired(store: InMemoryStore, broker: InMemoryBroker) -> AsyncIterator[Instance]:
    settings = make_settings(UNUSED)
    instance = build_instance(
        settings,
        engine=create_engine(UNUSED),
        store=cast(EventStore, store),
        broker=cast(BrokerLink, broker),
    )
    await instance.writer.load()
    writer = asyncio.create_task(instance.writer.run())
    try:
        yield instance
    finally:
        instance.writer.close()
        await asyncio.wait_for(writer, timeout=5)
        await instance.engine.dispose()


async def test_a_standalone_instance_wired_over_twins_stores_and_serves_a_write() -> None:
    store, broker = InMemoryStore(), InMemoryBroker()
    async with wired(store, broker) as instance:
        result = await instance.service.put("system-mapping", "erp", MAPPING, None, META)
        served = await instance.service.get("system-mapping", "erp")

    assert (result.version, result.position, result.created) == (1, 1, True)
    assert served == (MAPPING, 1)
    assert [(e.position, e.kind, e.name, e.data) for e in store.log.values()] == [
        (1, "system-mapping", "erp", MAPPING)
    ]
    assert store.log[1].signature is not None  # the wiring gives the writer the cluster's key


async def test_a_write_queued_while_the_role_changes_is_refused_by_the_wired_writer() -> None:
    store, broker = InMemoryStore(), InMemoryBroker()
    async with wired(store, broker) as instance:
        await instance.writer.submit(PutItem("system-mapping", "a", MAPPING, None, META), epoch=1)
        # Accepted in an epoch that is not the instance's (the role changed meanwhile).
        with pytest.raises(NotWritable):
            await instance.writer.submit(
                PutItem("system-mapping", "b", MAPPING, None, META),
                epoch=instance.ha.role.epoch + 1,
            )

    assert [e.name for e in store.log.values()] == ["a"]


async def test_who_am_i_names_the_broker_node_the_instance_is_connected_to() -> None:
    store, broker = InMemoryStore(), InMemoryBroker()
    async with wired(store, broker) as instance:
        assert instance.ha.whoami().status()["broker"] == {"node": None}
        await broker.start()
        assert instance.ha.whoami().status()["broker"] == {"node": "127.0.0.1:5672"}
