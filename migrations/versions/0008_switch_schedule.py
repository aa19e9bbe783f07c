"""Scheduled switches of roles: `POST /ha/switch-roles {"at": ...}` on the master.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# One row per schedule, local to the master that took it (never replicated). A row goes from
# `scheduled` to `running` (committed before the handover starts) and then to `done`, `failed`
# or `unknown` (the promote may have reached the shadow; a process stopped while `running` is
# `unknown` too), or from `scheduled` to `cancelled` (by a person, or by any role change, in the
# role change's own transaction). At most one row is scheduled or running at a time.
STATES = "'scheduled', 'running', 'done', 'failed', 'unknown', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "switch_schedule",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="scheduled"),
        sa.Column("reason", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"state IN ({STATES})", name="switch_schedule_state"),
    )
    op.create_index(
        "switch_schedule_one_open",
        "switch_schedule",
        [sa.text("(true)")],
        unique=True,
        postgresql_where=sa.text("state IN ('scheduled', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("switch_schedule")
