"""Signed events: a MAC of each event's chain value, made with the cluster's event key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The chain alone is unkeyed: anyone who has seen one envelope can compute the next link, and a
# superuser can re-chain a rewritten log. The signature is a MAC of the chain value with a key
# derived from the cluster secret (which the database never sees), so it vouches for the whole
# prefix up to its event. Nullable: events written before a secret was set carry none; a shadow
# refuses an unsigned replicated event, and /audit/verify refuses an unsigned event after a
# signed one. A plain column change: the append-only trigger stays as it is.
QUARANTINE = """
CREATE OR REPLACE FUNCTION shadowline_quarantine_after(fork bigint, new_epoch integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  moved integer;
BEGIN
  IF (SELECT base_position FROM store_head WHERE id = 1) > 0 THEN
    RAISE EXCEPTION 'shadowline: history below the bootstrap image is incomplete; cannot rebuild';
  END IF;
  INSERT INTO quarantine (position, id, epoch, type, kind, name, version, data, metadata,
                          recorded_at, chain, signature, fork_position, new_epoch)
    SELECT position, id, epoch, type, kind, name, version, data, metadata, recorded_at, chain,
           signature, fork, new_epoch
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


def upgrade() -> None:
    op.add_column("events", sa.Column("signature", sa.LargeBinary, nullable=True))
    op.add_column("quarantine", sa.Column("signature", sa.LargeBinary, nullable=True))
    op.execute(QUARANTINE)


def downgrade() -> None:
    # 0003's function body: the same, without the signature column.
    unsigned = QUARANTINE.replace("chain, signature, fork_position", "chain, fork_position")
    op.execute(unsigned.replace("chain,\n           signature, fork,", "chain,\n           fork,"))
    op.drop_column("quarantine", "signature")
    op.drop_column("events", "signature")
