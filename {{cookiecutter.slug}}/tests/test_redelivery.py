"""Late acknowledgement, proven: SIGKILL a worker mid-stream and nothing enqueued is lost."""

import secrets
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from dev import services

from .conftest import Process, Web, broker_client, fresh_database, release, wait_until

NOTES = 150
# Redis redelivers a lost worker's tasks after the visibility timeout: short here, for the test.
FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": "8",
    "TASK_TIME_LIMIT_SECONDS": "6",
    "TASK_RETRY_BACKOFF_MAX_SECONDS": "4",
    "DB_TIMEOUT_SECONDS": "5",
    "WORKER_CONCURRENCY": "1",
}


def test_sigkill_mid_stream_loses_nothing(
    start: Callable[..., Any], broker: str, db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    web: Web = start("web", BROKER_URL=broker)
    web.wait_ready()
    user = web.signed_in()
    ids = [
        user.post("/api/v1/notes", json={"title": f"n{i}", "body": "a b c"}).json()["id"]
        for i in range(NOTES)
    ]

    def done() -> int:
        return int(
            db.execute(  # type: ignore[index]
                "SELECT count(*) FROM notes WHERE id = ANY(%s) AND enriched_at IS NOT NULL", [ids]
            ).fetchone()[0]
        )

    # One note's row is locked, so the worker is surely mid-task when it is killed.
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [ids[0]])
        first: Process = start("worker", BROKER_URL=broker, **FAST_REDELIVERY)
        first.wait_for_log("task received")
        time.sleep(2)
        first.kill_group()  # SIGKILL, main process and pool child alike
        killed_at = time.monotonic()
    assert done() < NOTES  # it really was cut off mid-stream

    start("worker", BROKER_URL=broker, **FAST_REDELIVERY)
    # Redis hands the cut-off task out again after the 8 s visibility timeout (RabbitMQ at once):
    # about 10 s here. A task acknowledged before it ran never comes back.
    wait_until(
        lambda: done() == NOTES,
        timeout=30,
        interval=0.2,
        describe=lambda: f"all {NOTES} notes enriched; {done()} are",
    )
    seconds = time.monotonic() - killed_at
    print(f"{broker.split(':')[0]}: all {NOTES} notes enriched {seconds:.1f}s after SIGKILL")


def received(worker: Process, task_name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in worker.records()
        if r["event"] == "task received" and r.get("task_name") == task_name
    ]


def test_a_task_whose_worker_dies_every_time_is_dead_lettered(
    start: Callable[..., Any], broker: str, db: psycopg.Connection[Any], migrated: dict[str, str]
) -> None:
    """Out of memory, the hard time limit: a task that kills its worker each time it runs comes
    back after each death; past TASK_MAX_DELIVERIES it is dead-lettered instead of run again."""
    queue = f"deaths-{secrets.token_hex(4)}"  # this task only: no one else's messages
    env = {"BROKER_URL": broker, "TASK_QUEUE": queue, "TASK_MAX_DELIVERIES": "2", **FAST_REDELIVERY}
    row = db.execute("INSERT INTO notes (title, body) VALUES ('t', 'a b') RETURNING id").fetchone()
    assert row is not None
    note, task_id = row[0], f"deaths-{secrets.token_hex(6)}"
    sender = broker_client({**migrated, **env})
    try:
        with psycopg.connect(migrated["DATABASE_URL"]) as holder:
            # Each delivery waits on the note's row: it is surely mid-run when its worker dies.
            holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note])
            sender.send_task("notes.enrich", args=[note], queue=queue, task_id=task_id)
            for _ in range(2):  # TASK_MAX_DELIVERIES deliveries, each killed mid-run
                worker: Process = start("worker", **env)
                worker.wait_for_log("task received", timeout=30)
                time.sleep(1.5)
                worker.kill_group()
            last: Process = start("worker", **env)
            holder.rollback()  # the third delivery could run to the end: it must not run at all
            last.wait_for_log("task received", timeout=30)

            def dead() -> Any:
                return db.execute(
                    "SELECT error FROM dead_letters WHERE task_id = %s", [task_id]
                ).fetchone()

            error = wait_until(dead, timeout=30, describe=lambda: str(last.lines[-5:]))[0]
        assert "TooManyDeliveries" in error, error
        assert "delivered 3 times" in error, error
        enriched = db.execute("SELECT enriched_at FROM notes WHERE id = %s", [note]).fetchone()
        assert enriched == (None,)
        assert [r["task_id"] for r in received(last, "notes.enrich")] == [task_id]
    finally:
        if broker.startswith("amqp"):  # a RabbitMQ queue outlives its consumers
            with sender.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)


def test_the_sweep_does_not_enqueue_again_what_it_enqueued_within_the_wait(
    start: Callable[..., Any], migrated: dict[str, str], servers: services.Servers
) -> None:
    """A note whose task still waits (queued, retrying, running) is unenriched too: enqueuing it
    again at every sweep would only grow the backlog it waits in."""
    with fresh_database(servers.postgres, "test_sweep") as url:
        env = {**migrated, "DATABASE_URL": url, "TASK_QUEUE": f"sweep-{secrets.token_hex(4)}"}
        release(env)
        with psycopg.connect(url, autocommit=True) as db, psycopg.connect(url) as holder:
            # A note whose enqueue failed an hour ago: the sweep's to enqueue.
            row = db.execute(
                "INSERT INTO notes (title, body, created_at) "
                "VALUES ('t', 'a b', now() - interval '1 hour') RETURNING id"
            ).fetchone()
            assert row is not None
            holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", row)  # it stays so
            worker: Process = start(
                "worker", **{**env, "WORKER_CONCURRENCY": "3", "DB_TIMEOUT_SECONDS": "30"}
            )
            sender = broker_client(env)
            for sweeps in (1, 2):
                sender.send_task("notes.sweep", queue=env["TASK_QUEUE"])
                wait_until(partial(succeeded, worker, "notes.sweep", sweeps), timeout=30)
            time.sleep(1)  # a second enqueue would have been received by now
            assert len(received(worker, "notes.enrich")) == 1
            holder.rollback()


def succeeded(worker: Process, task_name: str, times: int) -> bool:
    """Whether Celery logged `times` runs of the task as succeeded."""
    runs = [r for r in worker.records() if f"{task_name}[" in r["event"]]
    return sum("succeeded" in r["event"] for r in runs) == times
