"""Role-change hooks: which (epoch, role) SHADOWLINE_ON_ROLE_CHANGE was run for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# One row per role this instance took in an epoch, inserted in the very transaction that takes
# the role (adapters.ha_repo.change_role), so no role change commits without its row and none is
# recorded that did not commit. The hook runner moves each row from `pending` to `running`
# (committed before the command starts, attempts + 1) and then to `done`, `failed` or
# `skipped`: a restart runs what is `pending`, reruns what is `running` (the process died while
# the hook ran; the hook sees SHADOWLINE_HOOK_ATTEMPT=2) and never touches the others. Local to
# the instance, never replicated: each instance runs its own hook for its own role.
STATES = "'pending', 'running', 'done', 'failed', 'skipped'"


def upgrade() -> None:
    op.create_table(
        "role_hooks",
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("previous_role", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("exit_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("epoch", "role"),
        sa.CheckConstraint(f"state IN ({STATES})", name="role_hooks_state"),
        sa.CheckConstraint("attempts >= 0", name="role_hooks_attempts"),
    )


def downgrade() -> None:
    op.drop_table("role_hooks")
