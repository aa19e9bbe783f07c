"""Fixtures shared by every test: unique databases on the real PostgreSQL, running instances.

Integration tests skip when PostgreSQL is missing on a developer's machine, but fail under
CI=true: a CI run that silently skipped them would prove nothing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from shadowline.adapters.migrate import create_database, drop_database, upgrade
from shadowline.bootstrap import Instance, build_instance
from shadowline.runtime import running
from shadowline.settings import Settings

BASE_URL = os.environ.get(
    "SHADOWLINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_PASSWORD = "admin-secret-1"
PASSWORDS = {"admin": ADMIN_PASSWORD, "ada": "auditor-secret-1", "vic": "viewer-secret-1"}


def database_url(name: str) -> str:
    return make_url(BASE_URL).set(database=name).render_as_string(False)


def _postgres_ready() -> str | None:
    import asyncpg

    async def probe() -> None:
        url = make_url(BASE_URL)
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            database=url.database,
            timeout=5,
        )
        await conn.close()

    try:
        asyncio.run(probe())
        return None
    except Exception as error:
        return f"PostgreSQL at {BASE_URL} is not reachable: {error}"


def require_service(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem} (CI=true: integration tests may not skip)")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def postgres() -> None:
    require_service(_postgres_ready())


@pytest.fixture(scope="session")
def template_database(postgres: None) -> Iterator[str]:
    """One migrated database per test session; each test copies it (CREATE DATABASE ... TEMPLATE)."""
    name = f"sl_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = database_url(name)
    asyncio.run(create_database(url))
    upgrade(url)
    yield name
    asyncio.run(drop_database(url))


async def _copy_template(template: str) -> str:
    import asyncpg

    name = f"sl_test_{uuid.uuid4().hex[:12]}"
    base = make_url(BASE_URL)
    conn = await asyncpg.connect(
        host=base.host, port=base.port or 5432, user=base.username, database=base.database
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return database_url(name)


@pytest.fixture
async def db_factory(template_database: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes fresh, migrated databases of this test's own; all dropped afterwards."""
    made: list[str] = []

    async def make() -> str:
        made.append(await _copy_template(template_database))
        return made[-1]

    yield make
    for url in made:
        await drop_database(url)


@pytest.fixture
async def db_url(db_factory: Callable[[], Awaitable[str]]) -> str:
    """A fresh, migrated database of this test's own; dropped afterwards."""
    return await db_factory()


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "instance": f"test-{uuid.uuid4().hex[:6]}",
        "cluster": f"t{uuid.uuid4().hex[:10]}",
        "http_bind": "127.0.0.1:0",
        "admin_password": ADMIN_PASSWORD,
        "cluster_secret": "test-cluster-secret",
        "snapshot_interval": 50,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def started(url: str, **overrides: Any) -> AsyncIterator[Instance]:
    instance = build_instance(make_settings(url, **overrides))
    async with running(instance, migrate=False):
        yield instance


@pytest.fixture
async def instance(db_url: str) -> AsyncIterator[Instance]:
    """A running standalone instance (no HTTP server: requests go through ASGI) with users
    admin (admin), ada (auditor) and vic (viewer)."""
    async with started(db_url) as inst:
        await inst.users.add("ada", "auditor", PASSWORDS["ada"])
        await inst.users.add("vic", "viewer", PASSWORDS["vic"])
        await inst.auth.refresh()
        yield inst


def http_client(inst: Instance, user: str | None = "admin") -> httpx.AsyncClient:
    auth = (user, PASSWORDS[user]) if user else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inst.asgi), base_url="http://instance", auth=auth
    )


@pytest.fixture
async def admin(instance: Instance) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(instance, "admin") as client:
        yield client


AMQP_URL = os.environ.get("SHADOWLINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _rabbitmq_ready() -> str | None:
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
        return None
    except Exception as error:
        return f"RabbitMQ at {AMQP_URL} is not reachable: {error}"


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    require_service(_rabbitmq_ready())


async def delete_cluster_topology(
    cluster: str, shadows: list[str], amqp_url: str = AMQP_URL
) -> None:
    """Delete what a test cluster declared on the broker."""
    from shadowline.adapters.broker import Names, delete_topology

    await delete_topology(amqp_url, Names(cluster), shadows)
