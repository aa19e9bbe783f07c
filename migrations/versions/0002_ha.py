"""High availability: HA state of the instance and the relay's cursor.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A shadow bootstrapped from a snapshot at p holds no events before p until its history
    # backfill has copied them from the master; until then `base_position` is p.
    op.add_column(
        "store_head", sa.Column("base_position", sa.BigInteger, nullable=False, server_default="0")
    )
    # A snapshot carries the chain value and epoch at its position, so a shadow bootstrapped from
    # it continues the hash chain and the epoch order exactly.
    op.add_column("snapshots", sa.Column("chain", sa.LargeBinary))
    op.add_column("snapshots", sa.Column("epoch", sa.Integer))
    op.create_table(
        "ha_state",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("auto_confirm", sa.Boolean, nullable=False, server_default=sa.false()),
        # on a shadow: its master
        sa.Column("master_instance", sa.Text),
        sa.Column("master_url", sa.Text),
        # on a master: its shadow
        sa.Column("shadow_instance", sa.Text),
        sa.Column("shadow_url", sa.Text),
        sa.Column("shadow_state", sa.Text),
        sa.Column("shadow_position", sa.BigInteger),
        sa.Column("shadow_seen_at", TZ),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("id = 1", name="ha_state_one_row"),
        sa.CheckConstraint(
            "shadow_state IS NULL OR shadow_state IN ('pending', 'confirmed')",
            name="ha_state_shadow_state",
        ),
    )
    op.execute("INSERT INTO ha_state (id) VALUES (1)")
    op.create_table(
        "relay_cursor",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("id = 1", name="relay_cursor_one_row"),
    )
    op.execute("INSERT INTO relay_cursor (id, position) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("relay_cursor")
    op.drop_table("ha_state")
    op.drop_column("store_head", "base_position")
    op.drop_column("snapshots", "epoch")
    op.drop_column("snapshots", "chain")
