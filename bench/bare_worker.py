"""The bare Celery worker: `notes.enrich` doing the same SELECT and UPDATE, and nothing else.

run.py runs it with the rendered project's venv, after the generated worker, on the same notes
(their `enriched_at` cleared again) and the same broker, so the worker row compares the two:

    python bare_worker.py enqueue ID...   # one notes.enrich message per note id, then exit
    python bare_worker.py                 # the worker (prefork, concurrency 2), until SIGTERM

Deliberately the same as the generated worker (core/broker.py): the broker, late
acknowledgement with one message prefetched per process, JSON, no results, the pool and its
size, and psycopg with `prepare_threshold=None` through a pooled SQLAlchemy engine per process.
Deliberately absent: what the template adds per task (its log lines and request id, metrics,
the delivery count, the feature flag, retries and dead letters, tracing hooks).

Reads DATABASE_URL, BROKER_URL (or REDIS_URL) and BENCH_QUEUE (the queue to use).
"""

import os
import sys
from datetime import UTC, datetime

from celery import Celery
from sqlalchemy import Engine, create_engine, text

DATABASE_URL = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
BROKER_URL = os.environ.get("BROKER_URL") or os.environ["REDIS_URL"]
QUEUE = os.environ.get("BENCH_QUEUE", "bare")

app = Celery("bare", broker=BROKER_URL, set_as_current=True)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=2,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_engine: Engine | None = None


def engine() -> Engine:
    global _engine  # made in each pool child on first use: no connection crosses the fork
    if _engine is None:
        _engine = create_engine(DATABASE_URL, connect_args={"prepare_threshold": None})
    return _engine


@app.task(name="notes.enrich")
def enrich(note_id: int) -> None:
    with engine().begin() as conn:
        row = conn.execute(
            text("SELECT body, owner_id FROM notes WHERE id = :id FOR UPDATE"), {"id": note_id}
        ).first()
        if row is None:
            return
        conn.execute(
            text("UPDATE notes SET word_count = :n, enriched_at = :at WHERE id = :id"),
            {"n": len(row.body.split()), "at": datetime.now(UTC), "id": note_id},
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["enqueue"]:
        for note_id in sys.argv[2:]:
            app.send_task("notes.enrich", args=[int(note_id)])
    else:
        app.worker_main(["worker", "--pool=prefork", "--concurrency=2", "--loglevel=WARNING"])
