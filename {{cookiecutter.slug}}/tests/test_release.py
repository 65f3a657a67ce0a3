"""Factors V and XII: the `release` process migrates, and running it again is harmless."""

import subprocess
import sys
from typing import Any

import psycopg

from dev import services

from .conftest import fresh_database, release


def test_release_applies_migrations_and_is_idempotent(
    migrated: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # `migrated` ran release once already; a second run must succeed and change nothing.
    output = release(migrated)
    tables = {
        row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"notes", "heartbeats", "dead_letters", "users", "alembic_version"} <= tables
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004",)]
    assert "Running upgrade" not in output  # nothing left to apply


def test_accounts_migration_only_expands(
    migrated: dict[str, str], servers: services.Servers
) -> None:
    """During a deploy the previous release's code runs against the new schema: what it wrote
    before and what it writes meanwhile (notes without an owner) must keep working."""
    with fresh_database(servers.postgres, "test_expand") as url:
        env = {**migrated, "DATABASE_URL": url}
        with psycopg.connect(url, autocommit=True) as conn:
            # The schema as of 0001, with a note written by that release.
            release_to(env, "0001")
            conn.execute("INSERT INTO notes (title, body) VALUES ('old', 'written before')")
            release(env)  # up to the newest: 0002 adds users and notes.owner_id
            conn.execute("INSERT INTO notes (title, body) VALUES ('old code', 'during deploy')")
            rows = conn.execute("SELECT title, owner_id FROM notes ORDER BY id").fetchall()
    assert rows == [("old", None), ("old code", None)]


def release_to(env: dict[str, str], revision: str) -> None:
    """Alembic up to `revision` only, with the same configuration `release` uses."""
    code = (
        "from alembic import command; "
        "from {{ cookiecutter.package }}.admin.release import alembic_config; "
        "from {{ cookiecutter.package }}.core.settings import load_settings; "
        f"command.upgrade(alembic_config(load_settings()), {revision!r})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
