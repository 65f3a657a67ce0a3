"""Releases side by side: this release's code on a database whose `release` has not run yet.

During a deploy the Deployments may start before the migration Job ends (or someone turns a
flag on too soon). Expand/contract keeps that safe: the column 0003 adds (`notes.summary`) is
read and written only while the `note-summary` flag is on, so with it off this code serves on
the 0002 schema; with it on, the missing column is a 503 in web and a retry in the worker, never
a 500 or a dead letter, and both recover by themselves once `release` has run.
"""

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dev import services

from .conftest import Process, Web, broker_client, error, fresh_database, release, wait_until
from .test_release import release_to

BEFORE_SUMMARY = "0002"  # the revision before 0003_note_summary


@pytest.fixture
def behind(migrated: dict[str, str], servers: services.Servers) -> Iterator[dict[str, str]]:
    """An environment whose database is migrated up to the revision before `notes.summary`."""
    with fresh_database(servers.postgres, "test_behind") as url:
        env = {**migrated, "DATABASE_URL": url, "TASK_QUEUE": f"behind-{secrets.token_hex(4)}"}
        release_to(env, BEFORE_SUMMARY)
        yield env


def test_web_serves_on_the_previous_schema_and_a_reader_turned_on_too_soon_is_503(
    start: Any, behind: dict[str, str]
) -> None:
    dark: Web = start("web", **{**behind, "FLAG_NOTE_SUMMARY": "off"})
    dark.wait_ready()
    user = dark.signed_in()
    created = user.post("/api/v1/notes", json={"title": "t", "body": "First. Second."})
    assert created.status_code == 201, created.text
    note = created.json()["id"]
    assert user.get(f"/api/v1/notes/{note}").status_code == 200  # flag off: column not read
    assert user.get("/api/v1/notes").status_code == 200

    # The reader released before its migration ran: a 503 to retry, not a 500.
    early: Web = start("web", **{**behind, "FLAG_NOTE_SUMMARY": "on"})
    early.wait_ready()  # /readyz stays 200: everything but the early reader works
    client = early.new_client(cookies=user.cookies)
    for path in (f"/api/v1/notes/{note}", "/api/v1/notes"):
        response = client.get(path)
        assert response.status_code == 503, response.text
        assert "schema" in error(response)
        assert response.headers["retry-after"] == "5"
    early.wait_for_log("database schema behind this release")

    release(behind)  # the Job completes: the same processes now serve the summary
    response = client.get(f"/api/v1/notes/{note}")
    assert response.status_code == 200, response.text
    assert response.json()["summary"] is None  # written before: not enriched with it


def test_a_task_on_the_previous_schema_retries_until_release_has_run(
    start: Any, behind: dict[str, str]
) -> None:
    with psycopg.connect(behind["DATABASE_URL"], autocommit=True) as db:
        row = db.execute(
            "INSERT INTO notes (title, body) VALUES ('t', 'First one. Second.') RETURNING id"
        ).fetchone()
        assert row is not None
        note = row[0]
        worker: Process = start(
            "worker",
            **behind,
            FLAG_NOTE_SUMMARY="on",  # the worker writes the column 0003 adds
            TASK_RETRY_BACKOFF_SECONDS="0.5",
            TASK_RETRY_BACKOFF_MAX_SECONDS="1",
            TASK_MAX_RETRIES="100",
        )
        broker_client(behind).send_task("notes.enrich", args=[note], queue=behind["TASK_QUEUE"])

        def retried() -> list[dict[str, Any]]:
            return [r for r in worker.records() if r["event"] == "retrying"]

        # As long as the settings allow, past Celery's own default limit of 3 (a slow Job).
        wait_until(lambda: len(retried()) >= 5, timeout=30)
        assert {r["error"] for r in retried()} == {"ProgrammingError"}
        release(behind)

        def enriched() -> Any:
            return db.execute(
                "SELECT summary FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note]
            ).fetchone()

        assert wait_until(enriched, timeout=30, describe=lambda: str(worker.lines[-8:])) == (
            "First one.",
        )
        assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def test_a_task_with_the_flag_off_runs_on_the_previous_schema(
    start: Any, behind: dict[str, str]
) -> None:
    """Expand/contract in the worker: with the reader dark, the column is not even written."""
    with psycopg.connect(behind["DATABASE_URL"], autocommit=True) as db:
        row = db.execute(
            "INSERT INTO notes (title, body) VALUES ('t', 'a b c') RETURNING id"
        ).fetchone()
        assert row is not None
        worker: Process = start("worker", **behind, FLAG_NOTE_SUMMARY="off")
        broker_client(behind).send_task("notes.enrich", args=[row[0]], queue=behind["TASK_QUEUE"])

        def word_count() -> Any:
            return db.execute("SELECT word_count FROM notes WHERE id = %s", row).fetchone()

        assert wait_until(lambda: word_count() != (None,), timeout=30)
        assert word_count() == (3,)
        assert not [r for r in worker.records() if r["event"] == "retrying"]
