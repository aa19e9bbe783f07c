"""Engine creation: a plain postgresql:// URL is accepted and given the asyncpg driver here."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> URL:
    return make_url(url).set(drivername="postgresql+asyncpg")


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, pool_size: int = 10, **options: Any) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per write. A connection that died with the server
        # fails its one request (503, the writer reloads), and the pool then reconnects.
        pool_pre_ping=False,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
        **options,
    )
