"""Factors V and XII: the `release` process migrates, and running it again is harmless."""

import json
import subprocess
import sys
import time
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory

from dev import services

from .conftest import Process, fresh_database, release, wait_until


def test_release_applies_migrations_and_is_idempotent(
    migrated: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # `migrated` ran release once already; a second run must succeed and change nothing.
    output = release(migrated)
    tables = {
        row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"notes", "heartbeats", "dead_letters", "users", "alembic_version"} <= tables
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
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


def migration_lock() -> int:
    """The key of the lock releases take turns on."""
    # Imported here: at the top, where it sorts against `dev` depends on the package's name.
    from {{ cookiecutter.package }}.core.migration_lock import MIGRATION_LOCK

    return MIGRATION_LOCK


def head_revision() -> str:
    """The newest migration this code has."""
    config = Config()
    config.set_main_option("script_location", str(files("{{ cookiecutter.package }}.core") / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def waiting(url: str) -> int:
    """How many sessions on the database wait for a lock."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    with psycopg.connect(url, autocommit=True) as conn:  # a fresh view: a transaction's is fixed
        row = conn.execute(query, [urlsplit(url).path.lstrip("/")]).fetchone()
    assert row is not None
    return int(row[0])


def revision(url: str) -> list[tuple[str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()


def test_two_releases_started_together_both_succeed(
    migrated: dict[str, str], servers: services.Servers
) -> None:
    """Two deploys at once (or a Job retried while the first pod still runs) on a fresh
    database: they take turns on the migration lock, and the second finds nothing to do."""
    with fresh_database(servers.postgres, "test_two_releases") as url:
        env = {**migrated, "DATABASE_URL": url}
        with psycopg.connect(url) as gate:
            # Both must reach the database before either gets anywhere: an uncommitted table of
            # the name Alembic creates first holds up whoever creates it, until the rollback.
            gate.execute("CREATE TABLE alembic_version (version_num varchar(32))")
            releases = [Process("release", env), Process("release", env)]
            wait_until(lambda: waiting(url) == 2, timeout=30)
            gate.rollback()
        codes = [each.popen.wait(60) for each in releases]
        for each in releases:
            for reader in each.readers:
                reader.join(5)
        assert codes == [0, 0], [each.lines[-5:] for each in releases]
        assert revision(url) == [(head_revision(),)]
        applied = ["Running upgrade" in "\n".join(each.lines) for each in releases]
        assert sorted(applied) == [False, True]  # one migrated, the other found it done


def test_a_release_waits_its_turn_past_the_request_timeouts(
    migrated: dict[str, str], servers: services.Servers
) -> None:
    """A release started while another is migrating waits for it (RELEASE_WAIT_SECONDS), however
    short the request path's timeouts and the migrations' own lock timeout are."""
    with fresh_database(servers.postgres, "test_release_turn") as url:
        env = {
            **migrated,
            "DATABASE_URL": url,
            "DB_TIMEOUT_SECONDS": "1",
            "RELEASE_LOCK_TIMEOUT_SECONDS": "1",
        }
        with psycopg.connect(url, autocommit=True) as first:  # a release mid-migration
            first.execute("SELECT pg_advisory_lock(%s)", [migration_lock()])
            second = Process("release", env)
            second.wait_for_log("another release is migrating")
            time.sleep(4)  # four times either timeout
            assert second.popen.poll() is None, second.lines[-5:]
            first.execute("SELECT pg_advisory_unlock(%s)", [migration_lock()])
            assert second.popen.wait(30) == 0, second.lines[-5:]
        assert revision(url) == [(head_revision(),)]


def test_a_release_gives_up_after_its_wait_bound_having_applied_nothing(
    migrated: dict[str, str], servers: services.Servers
) -> None:
    with fresh_database(servers.postgres, "test_release_busy") as url:
        env = {**migrated, "DATABASE_URL": url, "RELEASE_WAIT_SECONDS": "1"}
        with psycopg.connect(url, autocommit=True) as first:
            first.execute("SELECT pg_advisory_lock(%s)", [migration_lock()])
            second = Process("release", env)
            assert second.popen.wait(30) == 75  # EX_TEMPFAIL: a retry may succeed
            for reader in second.readers:
                reader.join(5)
            tables = first.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        assert tables == []
        last = json.loads(second.lines[-1])
        assert last["level"] == "critical"
        assert "RELEASE_WAIT_SECONDS" in last["event"], last
