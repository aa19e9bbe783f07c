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

# What the application role may do. It writes the log and the projection (items, the head) only
# through the SECURITY DEFINER functions of migration 0006, which derive what is served from the
# events they insert; snapshots are INSERT and SELECT only. The rows it may update directly
# (instance and HA state, the relay's cursor, users, local config) change nothing served from the
# log: the relay cursor only decides what is published again, and a shadow checks what it applies.
# Everything is revoked first, so running this again takes back what older releases granted.
APP_FUNCTIONS = (
    "shadowline_append(bigint, bigint[], uuid[], integer[], text[], text[], text[], integer[], "
    "jsonb[], jsonb[], timestamptz[], bytea[], bytea[])",
    "shadowline_backfill(bigint[], uuid[], integer[], text[], text[], text[], integer[], jsonb[], "
    "jsonb[], timestamptz[], bytea[], bytea[], bigint)",
    "shadowline_install(bigint, bytea, integer, text, text[], text[], integer[], boolean[], "
    "jsonb[], bigint[], timestamptz[])",
    "shadowline_fence(integer)",
    # DELETE on events and snapshots only works through the quarantine (migrations 0003, 0006).
    "shadowline_quarantine_after(bigint, integer)",
)
APP_TABLES = (
    "events, snapshots, store_head, items, quarantine, instance_state, ha_state, relay_cursor, "
    "users, local_config, role_hooks, switch_schedule, alembic_version"
)
APP_GRANTS = (
    f"REVOKE ALL ON {APP_TABLES} FROM {{role}}",
    f"REVOKE ALL ON FUNCTION {', '.join(APP_FUNCTIONS)} FROM {{role}}",
    "GRANT SELECT ON events, store_head, items, quarantine, alembic_version TO {role}",
    "GRANT SELECT, INSERT ON snapshots TO {role}",
    "GRANT SELECT, UPDATE ON instance_state, ha_state, relay_cursor TO {role}",
    # Role-change hooks: a row is inserted with each role change, then marked as the hook runs.
    "GRANT SELECT, INSERT, UPDATE ON role_hooks TO {role}",
    # Scheduled switches: taken, then marked as they run or are cancelled.
    "GRANT SELECT, INSERT, UPDATE ON switch_schedule TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON users, local_config TO {role}",
    f"GRANT EXECUTE ON FUNCTION {', '.join(APP_FUNCTIONS)} TO {{role}}",
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


async def database_exists(url: str) -> bool:
    """Whether the URL's database exists (connecting to 'postgres')."""
    target = make_url(url)
    engine = create_engine(target.set(database="postgres").render_as_string(False), pool_size=1)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            )
            return bool(found)
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
