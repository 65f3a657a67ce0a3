"""users, and notes owned by them

Expand only: a new table and a nullable column, so the code of the previous release keeps
working against this schema while both run during a deploy. Notes written before this have no
owner and are visible to no one; a later migration may delete them and make the column NOT NULL
(the contract step), once no running code writes notes without an owner.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("password_changed_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.add_column("notes", sa.Column("owner_id", sa.Integer(), nullable=True))
    op.create_foreign_key("fk_notes_owner_id_users", "notes", "users", ["owner_id"], ["id"])
    # Serves both "this user's notes, newest first" and the foreign key's lookups.
    op.create_index("ix_notes_owner_id", "notes", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_notes_owner_id", "notes")
    op.drop_constraint("fk_notes_owner_id_users", "notes")
    op.drop_column("notes", "owner_id")
    op.drop_index("ix_users_email_lower", "users")
    op.drop_table("users")
