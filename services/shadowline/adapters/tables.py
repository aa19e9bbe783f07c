"""The schema of one instance's database, as SQLAlchemy Core tables (migrations/ creates it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


def _event_columns() -> list[Column[Any]]:
    """The columns of an event: the log and the quarantine hold the same rows."""
    return [
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("id", Uuid, nullable=False, unique=True),
        Column("epoch", Integer, nullable=False),
        Column("type", Text, nullable=False),
        Column("kind", Text),
        Column("name", Text),
        Column("version", Integer),
        Column("data", JSONB),
        Column("metadata", JSONB, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("chain", LargeBinary, nullable=False),
        Column("signature", LargeBinary),  # migration 0005
    ]


# Append-only: a trigger and the grants refuse UPDATE, DELETE and TRUNCATE.
events = Table("events", metadata, *_event_columns())

# One row. Every append updates it with a compare-and-set on `position`; the row lock this takes
# serializes writers, so position order is commit order and a reader tailing `position > n`
# never sees n+2 before n+1 is visible.
store_head = Table(
    "store_head",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("chain", LargeBinary, nullable=False),
    Column("recorded_at", DateTime(timezone=True)),
    Column("base_position", BigInteger, nullable=False),
    Column("fence_epoch", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),  # of the event at `position`; migration 0006
)

# The current state, kept in the append's transaction: reads and version checks need no replay.
items = Table(
    "items",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("live", Boolean, nullable=False),
    Column("value", JSONB),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    Column("digest", Text, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("chain", LargeBinary),
    Column("epoch", Integer),
)

# Local to each instance, never replicated.
users = Table(
    "users",
    metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

local_config = Table(
    "local_config",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Text),
)

instance_state = Table(
    "instance_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("role", Text, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# What this instance knows of its peer. Stored shadow states are 'pending' and 'confirmed'; the
# states shown to people ('syncing', 'connected', 'lost') derive from position and last contact.
ha_state = Table(
    "ha_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("auto_confirm", Boolean, nullable=False),
    Column("master_instance", Text),
    Column("master_url", Text),
    Column("shadow_instance", Text),
    Column("shadow_url", Text),
    Column("shadow_state", Text),
    Column("shadow_position", BigInteger),
    Column("shadow_seen_at", DateTime(timezone=True)),
    Column("maintenance", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The relay's outbox cursor: every event at or below it is confirmed by the broker.
relay_cursor = Table(
    "relay_cursor",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Events an old master wrote after the fork, moved here on recovery (never dropped).
quarantine = Table(
    "quarantine",
    metadata,
    *(column for column in _event_columns() if column.name not in ("position", "id")),
    Column("position", BigInteger, nullable=False),
    Column("id", Uuid, primary_key=True),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    Column("fork_position", BigInteger, nullable=False),
    Column("new_epoch", Integer, nullable=False),
)

# Which (epoch, role) SHADOWLINE_ON_ROLE_CHANGE was run for (migration 0007): one row per role
# taken, inserted with the role change itself; pending -> running -> done | failed | skipped.
role_hooks = Table(
    "role_hooks",
    metadata,
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("role", Text, primary_key=True),
    Column("previous_role", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("exit_code", Integer),
    Column("detail", Text),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# Scheduled switches of roles (migration 0008): local to the master that took them;
# scheduled -> running -> done | failed | unknown, or scheduled -> cancelled.
switch_schedule = Table(
    "switch_schedule",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)
