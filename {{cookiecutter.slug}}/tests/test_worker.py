"""Factor VIII: background work in a real Celery worker on the real broker."""

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from celery import Celery

from .conftest import Web, wait_until


def enriched(db: psycopg.Connection[Any], note_id: int) -> int | None:
    row = db.execute(
        "SELECT word_count FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note_id]
    ).fetchone()
    return row[0] if row else None


def enqueue_directly(broker_url: str, note_id: int) -> None:
    """Enqueue as any client of the broker would, without going through web."""
    client = Celery(broker=broker_url)
    client.send_task("notes.enrich", args=[note_id])
    client.close()


def test_posted_note_is_enriched_and_its_logs_carry_the_request_id(
    web: Web, start: Callable[..., Any], db: psycopg.Connection[Any]
) -> None:
    worker = start("worker")
    response = web.client.post(
        "/api/v1/notes",
        json={"title": "w", "body": "the quick brown fox"},
        headers={"X-Request-ID": "req-enrich-0001"},
    )
    note_id = response.json()["id"]
    wait_until(lambda: enriched(db, note_id), timeout=20)
    note = web.client.get(f"/api/v1/notes/{note_id}").json()
    assert (note["word_count"], note["enriched"]) == (4, True)

    task_lines = wait_until(
        lambda: [
            r
            for r in worker.records()
            if r.get("task_name") == "notes.enrich" and "succeeded" in r["event"]
        ],
        timeout=5,
    )
    task_id = task_lines[0]["task_id"]
    mine = [r for r in worker.records() if r.get("task_id") == task_id]
    assert len(mine) >= 3  # received, enriched, succeeded
    assert all(r["request_id"] == "req-enrich-0001" for r in mine)


def test_running_the_task_twice_changes_nothing(
    web: Web, start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    start("worker")
    note_id = web.client.post("/api/v1/notes", json={"title": "i", "body": "a b"}).json()["id"]
    wait_until(lambda: enriched(db, note_id), timeout=20)
    before = db.execute(
        "SELECT word_count, title, body FROM notes WHERE id = %s", [note_id]
    ).fetchone()
    enqueue_directly(migrated["REDIS_URL"], note_id)
    enqueue_directly(migrated["REDIS_URL"], note_id)
    time.sleep(1.5)
    after = db.execute(
        "SELECT word_count, title, body FROM notes WHERE id = %s", [note_id]
    ).fetchone()
    assert before == after == (2, "i", "a b")


def test_task_failing_every_retry_is_dead_lettered(
    web: Web, start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    note_id = web.client.post("/api/v1/notes", json={"title": "d", "body": "x y z"}).json()["id"]
    # Hold the note's row lock: every attempt times out on it (a real transient failure).
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        worker = start(
            "worker",
            TASK_MAX_RETRIES="2",
            TASK_RETRY_BACKOFF_SECONDS="0.2",
            DB_TIMEOUT_SECONDS="0.5",
        )
        dead = wait_until(
            lambda: db.execute(
                "SELECT task_name, error FROM dead_letters WHERE args::jsonb = %s::jsonb",
                [f"[{note_id}]"],
            ).fetchone(),
            timeout=30,
        )
    assert dead[0] == "notes.enrich"
    assert "while locking tuple" in dead[1]  # the lock wait hit its timeout
    retries = [r for r in worker.records() if r["event"] == "retrying"]
    assert len(retries) == 2
    failed = [r for r in worker.records() if r["event"] == "task failed for good"]
    assert failed
    assert failed[0]["level"] == "error"
    assert enriched(db, note_id) is None


def test_sigterm_lets_the_running_task_finish_then_exits_0(
    web: Web, start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    note_id = web.client.post("/api/v1/notes", json={"title": "t", "body": "one"}).json()["id"]
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        worker = start("worker", DB_TIMEOUT_SECONDS="10")
        worker.wait_for_log("task received")
        time.sleep(0.5)  # the task is now blocked on the row lock, mid-run
        worker.send(signal.SIGTERM)
        threading.Timer(1.0, holder.rollback).start()  # let it go a second after SIGTERM
        assert worker.popen.wait(20) == 0
    assert enriched(db, note_id) == 1
