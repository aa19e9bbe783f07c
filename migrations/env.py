"""Alembic environment: runs migrations over the async engine shadowline itself uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from shadowline.adapters.db import create_engine
from shadowline.adapters.tables import metadata

target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        # Instances started side by side migrate one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(7438120991)"))
        context.run_migrations()


async def _main() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "", pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("shadowline migrations run online only")
asyncio.run(_main())
