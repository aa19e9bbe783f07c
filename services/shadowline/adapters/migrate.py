"""Schema migrations (alembic, in migrations/), database creation and least-privilege grants."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shadowline.adapters.db import create_engine
from shadowline.adapters.resources import migrations_dir

# What the application role may do: events and snapshots are INSERT and SELECT only.
APP_GRANTS = (
    "GRANT SELECT, INSERT ON events, snapshots TO {role}",
    "GRANT SELECT, UPDATE ON store_head, instance_state, ha_state, relay_cursor TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON items TO {role}",
    # DELETE on events and snapshots only works through the quarantine (see migration 0003).
    "GRANT SELECT ON quarantine TO {role}",
    "GRANT EXECUTE ON FUNCTION shadowline_quarantine_after(bigint, integer) TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON users, local_config TO {role}",
    "GRANT SELECT ON alembic_version TO {role}",
)


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Apply every migration to head; idempotent. Runs its own event loop: call it off-loop."""
    command.upgrade(_config(url), "head")


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("postgresql://unused/unused")).get_current_head()
    assert head is not None
    return head


async def current_revision(url: str) -> str | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def create_database(url: str) -> bool:
    """Create the URL's database if it is missing (connecting to 'postgres'); True if created."""
    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError("the database URL names no database")
    engine = create_engine(
        target.set(database="postgres").render_as_string(False),
        pool_size=1,
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            quoted = '"' + name.replace('"', '""') + '"'
            await connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return True
    finally:
        await engine.dispose()


async def grant_app_role(url: str, role: str) -> None:
    """Grant `role` only what the running instance needs (run as the tables' owner)."""
    engine = create_engine(url, pool_size=1)
    quoted = '"' + role.replace('"', '""') + '"'
    try:
        async with engine.begin() as connection:
            for statement in APP_GRANTS:
                await connection.exec_driver_sql(statement.format(role=quoted))
    finally:
        await engine.dispose()


async def drop_database(url: str) -> None:
    """Drop the URL's database if it exists (the demo and the tests start from nothing)."""
    target = make_url(url)
    engine = create_engine(
        target.set(database="postgres").render_as_string(False),
        pool_size=1,
        isolation_level="AUTOCOMMIT",
    )
    quoted = '"' + (target.database or "").replace('"', '""') + '"'
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await engine.dispose()
