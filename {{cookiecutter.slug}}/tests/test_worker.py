"""Factor VIII: background work in a real Celery worker on a real broker — Redis, and RabbitMQ
when TEST_AMQP_URL is set, with no code change between them (factor IV)."""

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import PLAIN_HTTP, Process, Web, broker_client, wait_until


def enriched(db: psycopg.Connection[Any], note_id: int) -> int | None:
    row = db.execute(
        "SELECT word_count FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note_id]
    ).fetchone()
    return row[0] if row else None


@pytest.fixture
def sender(request: pytest.FixtureRequest, broker: str, shared: Callable[..., Any]) -> Web:
    """A web process that enqueues on `broker`. It only takes requests, so it is shared: the
    run's own on Redis (its default broker), this module's on RabbitMQ. What the tests watch
    is the worker, which each starts for itself."""
    if broker == request.getfixturevalue("redis_url"):
        run_wide: Web = request.getfixturevalue("web")
        return run_wide
    on_broker: Web = shared("web", BROKER_URL=broker)
    return on_broker


def post_note(user: httpx.Client, body: str, **headers: str) -> int:
    response = user.post("/api/v1/notes", json={"title": "t", "body": body}, headers=headers)
    assert response.status_code == 201
    return int(response.json()["id"])


def test_posted_note_is_enriched_and_its_logs_carry_the_request_id(
    start: Callable[..., Any], broker: str, sender: Web, db: psycopg.Connection[Any]
) -> None:
    worker: Process = start("worker", BROKER_URL=broker)
    user = sender.signed_in()
    note_id = post_note(user, "the quick brown fox", **{"X-Request-ID": "req-enrich-0001"})
    wait_until(lambda: enriched(db, note_id), timeout=20)
    note = user.get(f"/api/v1/notes/{note_id}").json()
    assert (note["word_count"], note["enriched"]) == (4, True)

    def enriched_by_worker() -> dict[str, Any] | None:
        done = (r for r in worker.records() if r["event"] == "note enriched")
        return next((r for r in done if r.get("note_id") == note_id), None)

    # The worker, not the web process, did the work, and the request's id crossed the broker.
    line = wait_until(
        enriched_by_worker,
        timeout=5,
        describe=lambda: f"the worker to log: note {note_id} enriched",
    )
    assert line.get("request_id") == "req-enrich-0001"

    def task_lines() -> list[dict[str, Any]]:
        return [r for r in worker.records() if r.get("task_id") == line["task_id"]]

    lines = wait_until(lambda: len(task_lines()) >= 3 and task_lines(), timeout=5)
    events = [r["event"] for r in lines]
    assert events[0] == "task received"
    assert "note enriched" in events
    assert any("succeeded" in e for e in events)
    # Every line the worker wrote about that task carries the id, not only ours.
    assert all(r.get("request_id") == "req-enrich-0001" for r in lines)


def test_running_the_task_twice_changes_nothing(
    start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str], web: Web
) -> None:
    start("worker")
    note_id = post_note(web.signed_in(), "a b")
    wait_until(lambda: enriched(db, note_id), timeout=20)
    before = db.execute(
        "SELECT word_count, title, body FROM notes WHERE id = %s", [note_id]
    ).fetchone()
    client = broker_client(migrated)  # any client of the broker, not via web
    for _ in range(2):
        client.send_task("notes.enrich", args=[note_id], queue=migrated["TASK_QUEUE"])
    client.close()
    time.sleep(1.5)
    after = db.execute(
        "SELECT word_count, title, body FROM notes WHERE id = %s", [note_id]
    ).fetchone()
    assert before == after == (2, "t", "a b")


def test_task_failing_every_retry_is_dead_lettered(
    start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str], web: Web
) -> None:
    note_id = post_note(web.signed_in(), "x y z", **{"X-Request-ID": "req-dead-00001"})
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
                "SELECT task_name, error, request_id FROM dead_letters"
                " WHERE args::jsonb = %s::jsonb",
                [f"[{note_id}]"],
            ).fetchone(),
            timeout=30,
        )
    assert dead[0] == "notes.enrich"
    assert "while locking tuple" in dead[1]  # the lock wait hit its timeout
    assert dead[2] == "req-dead-00001"
    retries = [r for r in worker.records() if r["event"] == "retrying"]
    assert [r["attempt"] for r in retries] == [1, 2]
    metrics = httpx.get(
        f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics", verify=PLAIN_HTTP
    ).text
    assert 'celery_tasks_dead_lettered_total{task="notes.enrich"} 1.0' in metrics
    assert 'celery_task_retries_total{task="notes.enrich"} 2.0' in metrics
    failed = [r for r in worker.records() if r["event"] == "task failed for good"]
    assert failed
    assert failed[0]["level"] == "error"
    assert enriched(db, note_id) is None


def test_sigterm_lets_the_running_task_finish_then_exits_0(
    start: Callable[..., Any],
    broker: str,
    sender: Web,
    db: psycopg.Connection[Any],
    migrated: dict[str, str],
) -> None:
    note_id = post_note(sender.signed_in(), "one")
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        worker = start("worker", BROKER_URL=broker, DB_TIMEOUT_SECONDS="10")
        worker.wait_for_log("task received")
        # The task is blocked on the row lock, mid-run: its pool process is seen waiting (a
        # fixed pause was not enough on a busy machine, where the task had not started yet).
        wait_until(
            lambda: db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query LIKE %s",
                ["%FROM notes%FOR UPDATE%"],
            ).fetchone()[0],  # type: ignore[index]
            timeout=20,
        )
        worker.send(signal.SIGTERM)
        threading.Timer(1.0, holder.rollback).start()  # let it go a second after SIGTERM
        assert worker.popen.wait(20) == 0
    assert enriched(db, note_id) == 1
