"""The clock's housekeeping, run by a real worker: nothing grows without bound, nothing is lost."""

from collections.abc import Callable
from typing import Any

import psycopg

from .conftest import broker_client, wait_until


def run_task(env: dict[str, str], name: str) -> None:
    """Enqueue a task the way the clock does: by name, on the service's queue."""
    client = broker_client(env)
    client.send_task(name, queue=env["TASK_QUEUE"])
    client.close()


def test_prune_deletes_only_rows_past_the_retention_age(
    start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    db.execute(
        "INSERT INTO heartbeats (task_id, ran_at) VALUES"
        " ('old-beat', now() - interval '3 days'), ('new-beat', now())"
    )
    db.execute(
        "INSERT INTO dead_letters (task_id, task_name, args, kwargs, error, failed_at) VALUES"
        " ('old-dead', 'x', '[]', '{}', 'e', now() - interval '3 days'),"
        " ('new-dead', 'x', '[]', '{}', 'e', now())"
    )
    start("worker", RETENTION_DAYS="2")
    run_task(migrated, "clock.prune")

    def remaining() -> set[str]:
        rows = db.execute(
            "SELECT task_id FROM heartbeats WHERE task_id LIKE '%-beat'"
            " UNION ALL SELECT task_id FROM dead_letters WHERE task_id LIKE '%-dead'"
        ).fetchall()
        return {row[0] for row in rows}

    wait_until(lambda: remaining() == {"new-beat", "new-dead"}, timeout=20)


def test_sweep_enqueues_notes_whose_enqueue_was_lost(
    start: Callable[..., Any], db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    # A note stored while the broker was down: never enqueued, older than a queued task can wait.
    row = db.execute(
        "INSERT INTO notes (title, body, created_at) VALUES ('lost', 'one two', now() - interval"
        " '1 hour') RETURNING id"
    ).fetchone()
    assert row is not None
    start("worker")
    run_task(migrated, "notes.sweep")
    wait_until(
        lambda: db.execute(
            "SELECT word_count FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [row[0]]
        ).fetchone(),
        timeout=20,
    )
