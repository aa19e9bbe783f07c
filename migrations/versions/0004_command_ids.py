"""Config commands over the broker: find the event a command_id produced, cheaply.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# A config command that the broker delivers again (the master died between its reply and its
# ack, or the publisher retried after a timeout) is answered from the event it produced, never
# applied twice. Partial: only events written from a broker command carry `command_id`, so HTTP
# writes pay nothing for this index. Unique: the master looks the id up before appending, one
# command at a time, so two events with one command_id would be a bug the database should stop.
# An index changes no row, so the append-only triggers of `events` are not involved; the
# quarantine function deletes rows through the owner and the index follows them.
INDEX = """
CREATE UNIQUE INDEX events_command_id ON events ((metadata->>'command_id'))
WHERE metadata ? 'command_id'
"""


def upgrade() -> None:
    op.execute(INDEX)


def downgrade() -> None:
    op.execute("DROP INDEX events_command_id")
