"""Event store: append-only events with a hash chain, head, items, snapshots, local tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

REFUSE = """
CREATE FUNCTION shadowline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'shadowline: % on % is refused, the table is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION shadowline_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION shadowline_refuse_change()"
    )


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Uuid, nullable=False, unique=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("version", sa.Integer),
        sa.Column("data", JSONB),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("chain", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("position > 0", name="events_position_positive"),
        sa.CheckConstraint("octet_length(chain) = 32", name="events_chain_sha256"),
    )
    op.create_index("events_item", "events", ["kind", "name", "position"])
    op.create_index("events_recorded_at", "events", ["recorded_at"])
    op.create_index(
        "events_actor", "events", [sa.text("(metadata->>'actor')"), sa.text("position")]
    )
    op.create_table(
        "store_head",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("chain", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at", TZ),
        sa.CheckConstraint("id = 1", name="store_head_one_row"),
    )
    op.execute(
        "INSERT INTO store_head (id, position, chain) VALUES (1, 0, decode(repeat('00', 32), 'hex'))"
    )
    op.create_table(
        "items",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("live", sa.Boolean, nullable=False),
        sa.Column("value", JSONB),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("taken_at", TZ, nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("state", JSONB, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("role IN ('admin', 'auditor', 'viewer')", name="users_role"),
    )
    op.create_table(
        "local_config",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by", sa.Text),
    )
    op.create_table(
        "instance_state",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.CheckConstraint("id = 1", name="instance_state_one_row"),
    )
    op.execute(
        "INSERT INTO instance_state (id, role, epoch, updated_at) VALUES (1, 'standalone', 1, now())"
    )
    op.execute(REFUSE)
    _append_only("events")
    _append_only("snapshots")


def downgrade() -> None:
    for table in (
        "instance_state",
        "local_config",
        "users",
        "snapshots",
        "items",
        "store_head",
        "events",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION shadowline_refuse_change()")
