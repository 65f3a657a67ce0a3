"""Factors V and XII: the `release` process migrates, and running it again is harmless."""

import subprocess
from typing import Any

import psycopg

from .conftest import PROCFILE, ROOT


def test_release_applies_migrations_and_is_idempotent(
    migrated: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # `migrated` ran release once already; a second run must succeed and change nothing.
    result = subprocess.run(
        ["/bin/sh", "-c", PROCFILE["release"]],
        cwd=ROOT,
        env=migrated,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tables = {
        row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"notes", "heartbeats", "dead_letters", "alembic_version"} <= tables
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    assert "Running upgrade" not in result.stdout  # nothing left to apply
