"""notes.summary, filled in by the worker while the `note-summary` flag is on

Expand only: a nullable column, so the previous release keeps working against this schema while
both run during a deploy. Deployed dark: nothing shows a summary until the flag is released.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("notes", sa.Column("summary", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("notes", "summary")
