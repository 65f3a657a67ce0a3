"""Alembic runs inside `release` (see admin/release.py), which hands it the validated settings."""

from alembic import context
from sqlalchemy import text

from {{ cookiecutter.package }}.core.db import create_db_engine
from {{ cookiecutter.package }}.core.models import Base

# Two releases started at once (two deploys, a retried Job) take turns instead of racing.
MIGRATION_LOCK = 0x12F  # any constant bigint; pg_advisory_xact_lock is freed at commit

settings = context.config.attributes["settings"]
engine = create_db_engine(settings)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
engine.dispose()
