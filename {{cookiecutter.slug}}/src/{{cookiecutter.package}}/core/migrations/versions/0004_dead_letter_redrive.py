"""dead letters an operator can act on: attempts, redrive audit trail, raw messages kept

Expand only: nullable columns and an index, so the previous release (which inserts dead letters
without them) keeps working against this schema while both run during a deploy.

- `attempts`: how many times the task ran before it was dead-lettered.
- `redriven_at`, `redriven_task_id`: set by `jobs dead redrive`, in the transaction that sends
  the task again; the row is kept as the audit trail.
- `redrive_succeeded_at`: the redriven task ran to the end. Until then (or a new dead letter
  pointing here), the clock's sweep sends it again: a message a Redis worker lost when it was
  killed is not the end of it.
- `redriven_from`: the dead letter a redriven task came from, when it fails for good again.
- `message`: the raw message (body, headers, content type) of one no worker could run (a task
  name it does not have, a body it cannot decode), so that a redrive sends it again as it came.
- `trace_parent`: the W3C trace context the task ran in, so that a redrive links to it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("attempts", sa.Integer(), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("redriven_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("dead_letters", sa.Column("redriven_task_id", sa.String(64), nullable=True))
    op.add_column(
        "dead_letters",
        sa.Column("redrive_succeeded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "dead_letters",
        sa.Column(
            "redriven_from",
            sa.Integer(),
            sa.ForeignKey("dead_letters.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.add_column("dead_letters", sa.Column("message", postgresql.JSONB(), nullable=True))
    op.add_column("dead_letters", sa.Column("trace_parent", sa.String(64), nullable=True))
    # `jobs dead list` and the worker's gauge ask for the rows not yet redriven.
    op.create_index(
        "ix_dead_letters_waiting",
        "dead_letters",
        ["task_name"],
        postgresql_where=sa.text("redriven_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_waiting", "dead_letters")
    for column in (
        "trace_parent",
        "message",
        "redriven_from",
        "redrive_succeeded_at",
        "redriven_task_id",
        "redriven_at",
        "attempts",
    ):
        op.drop_column("dead_letters", column)
