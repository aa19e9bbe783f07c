"""Failover: epoch fencing at the store, and the quarantine of events written after a fork.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

# Events may leave the log in one way only: a recovering old master moves what it wrote after the
# fork into `quarantine`. The trigger lets a row go only when the transaction says so and the row
# is already in quarantine, so nothing can be dropped, not even by the owner.
REFUSE = """
CREATE OR REPLACE FUNCTION shadowline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('shadowline.quarantine', true) = 'on' THEN
    IF TG_TABLE_NAME = 'snapshots' THEN
      RETURN OLD;
    END IF;
    IF TG_TABLE_NAME = 'events' AND EXISTS (SELECT 1 FROM quarantine q WHERE q.id = OLD.id) THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'shadowline: % on % is refused, the table is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$
"""

# The one way to quarantine: runs as the tables' owner (SECURITY DEFINER), so the application
# role needs no DELETE grant. It moves every event after the fork, drops the snapshots after it
# (derived data), rebuilds the current state as of the fork, and fences older epochs.
QUARANTINE = """
CREATE FUNCTION shadowline_quarantine_after(fork bigint, new_epoch integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  moved integer;
BEGIN
  IF (SELECT base_position FROM store_head WHERE id = 1) > 0 THEN
    RAISE EXCEPTION 'shadowline: history below the bootstrap image is incomplete; cannot rebuild';
  END IF;
  INSERT INTO quarantine (position, id, epoch, type, kind, name, version, data, metadata,
                          recorded_at, chain, fork_position, new_epoch)
    SELECT position, id, epoch, type, kind, name, version, data, metadata, recorded_at, chain,
           fork, new_epoch
    FROM events WHERE position > fork
    ON CONFLICT (id) DO NOTHING;
  GET DIAGNOSTICS moved = ROW_COUNT;
  PERFORM set_config('shadowline.quarantine', 'on', true);
  DELETE FROM events WHERE position > fork;
  DELETE FROM snapshots WHERE position > fork;
  PERFORM set_config('shadowline.quarantine', 'off', true);
  DELETE FROM items;
  INSERT INTO items (kind, name, version, live, value, position, updated_at)
    SELECT DISTINCT ON (kind, name) kind, name, version, type <> 'ConfigDeleted',
           CASE WHEN type = 'ConfigDeleted' THEN NULL ELSE data END, position, recorded_at
    FROM events WHERE kind IS NOT NULL AND type IN ('ConfigPut', 'ConfigDeleted')
    ORDER BY kind, name, position DESC;
  UPDATE store_head SET
    position = fork,
    chain = COALESCE((SELECT chain FROM events WHERE position = fork),
                     (SELECT chain FROM snapshots WHERE position = fork),
                     decode(repeat('00', 32), 'hex')),
    recorded_at = (SELECT recorded_at FROM events WHERE position = fork),
    fence_epoch = greatest(fence_epoch, new_epoch)
  WHERE id = 1;
  UPDATE relay_cursor SET position = least(position, fork) WHERE id = 1;
  RETURN moved;
END
$$
"""

RESTORE = """
CREATE OR REPLACE FUNCTION shadowline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'shadowline: % on % is refused, the table is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    # Appends of an epoch older than this are refused where the data is written.
    op.add_column(
        "store_head", sa.Column("fence_epoch", sa.Integer, nullable=False, server_default="0")
    )
    # Maintenance mode: the master's heartbeats say so, and watchdogs pause automatic failover.
    op.add_column(
        "ha_state", sa.Column("maintenance", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "quarantine",
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("version", sa.Integer),
        sa.Column("data", JSONB),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("chain", sa.LargeBinary, nullable=False),
        sa.Column("quarantined_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("fork_position", sa.BigInteger, nullable=False),
        sa.Column("new_epoch", sa.Integer, nullable=False),
    )
    op.execute(REFUSE)
    op.execute(QUARANTINE)
    op.execute("REVOKE ALL ON FUNCTION shadowline_quarantine_after(bigint, integer) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION shadowline_quarantine_after(bigint, integer)")
    op.execute(RESTORE)
    op.drop_table("quarantine")
    op.drop_column("ha_state", "maintenance")
    op.drop_column("store_head", "fence_epoch")
