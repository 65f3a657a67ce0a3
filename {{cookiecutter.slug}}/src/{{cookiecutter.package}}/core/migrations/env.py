"""Alembic runs inside `release` (see admin/release.py), which hands it the validated settings."""

from alembic import context

from {{ cookiecutter.package }}.core.db import create_release_engine
from {{ cookiecutter.package }}.core.migration_lock import migration_turn
from {{ cookiecutter.package }}.core.models import Base

settings = context.config.attributes["settings"]
# Its own statement and lock timeouts (RELEASE_*), not the request path's DB_TIMEOUT_SECONDS.
engine = create_release_engine(settings)
with engine.connect() as connection, migration_turn(connection, settings.release_wait_seconds):
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
