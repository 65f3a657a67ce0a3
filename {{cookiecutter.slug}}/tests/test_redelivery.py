"""Late acknowledgement, proven: SIGKILL a worker mid-stream and nothing enqueued is lost."""

import time
from collections.abc import Callable
from typing import Any

import psycopg

from .conftest import Process, Web, wait_until

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
