"""Factors V and XII: the `release` process migrates, and running it again is harmless."""

from typing import Any

import psycopg

from .conftest import release


def test_release_applies_migrations_and_is_idempotent(
    migrated: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # `migrated` ran release once already; a second run must succeed and change nothing.
    output = release(migrated)
    tables = {
        row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"notes", "heartbeats", "dead_letters", "alembic_version"} <= tables
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    assert "Running upgrade" not in output  # nothing left to apply
