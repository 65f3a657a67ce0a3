"""How many queued tasks a whole-worker SIGKILL loses, on Redis and on RabbitMQ, and whether the
sweeps bring every one back.

    PROJECT/.venv/bin/python bench/worker_kills.py PROJECT [--broker redis|amqp] [--kills 20]

PROJECT is a rendered, installed project (`make install`). For each round: N notes are stored
and their `notes.enrich` tasks queued, a `worker` (Procfile command) starts, and once it has
enriched a first note, a random 0.1 to 1 s later, its whole process group is killed (SIGKILL).
After the last round one worker runs until nothing changes for 2.5 visibility timeouts (Redis
hands unacknowledged messages back after one; RabbitMQ at once): the notes still not enriched
then are what the broker lost.
Then the clock's `notes.sweep` is sent once, and the notes still not enriched after it are what
is lost for good (the answer must be 0). Needs PostgreSQL and Redis (and RabbitMQ for amqp) on
127.0.0.1, as the generated tests do; it makes and drops its own database and queue.
"""

import argparse
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis
from celery import Celery

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
VISIBILITY = 10


def unenriched(db: psycopg.Connection, ids: list[int]) -> int:
    row = db.execute(
        "SELECT count(*) FROM notes WHERE id = ANY(%s) AND enriched_at IS NULL", [ids]
    ).fetchone()
    return int(row[0]) if row else 0


def claim_redis_db() -> int:
    """A Redis logical DB no test run holds, claimed as the generated tests claim theirs."""
    admin = redis.Redis.from_url(REDIS, db=0)
    for db in range(15, 0, -1):
        if admin.set(f"test-claim:{db}", "1", nx=True, ex=3600):
            return db
    sys.exit("all Redis logical databases are claimed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--notes", type=int, default=200, help="queued before each kill")
    args = parser.parse_args()
    name = f"kills_{secrets.token_hex(4)}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    queue = f"kills-{secrets.token_hex(4)}"
    redis_db = claim_redis_db()
    redis_url = f"{REDIS}/{redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "PATH": f"{args.project / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": PG.rsplit("/", 1)[0] + f"/{name}",
        "REDIS_URL": redis_url,
        "BROKER_URL": redis_url if args.broker == "redis" else AMQP,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "TASK_QUEUE": queue,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
        "TASK_TIME_LIMIT_SECONDS": "8",
        "TASK_RETRY_BACKOFF_MAX_SECONDS": "5",
        "WORKER_METRICS_PORT": "19400",
        "LOG_LEVEL": "WARNING",
    }
    procfile = dict(
        line.split(":", 1) for line in (args.project / "Procfile").read_text().splitlines() if line
    )
    command = ["/bin/sh", "-c", procfile["worker"].strip()]
    subprocess.run(["/bin/sh", "-c", procfile["release"]], env=env, check=True, capture_output=True)
    client = Celery(broker=env["BROKER_URL"])
    ids: list[int] = []
    try:
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
            for _ in range(args.kills):
                new = [
                    row[0]
                    for row in db.execute(
                        "INSERT INTO notes (title, body) SELECT 't', 'a b c'"
                        " FROM generate_series(1, %s) RETURNING id",
                        [args.notes],
                    ).fetchall()
                ]
                ids += new
                for note_id in new:
                    client.send_task("notes.enrich", args=[note_id], queue=queue)
                worker = subprocess.Popen(
                    command,
                    env=env,
                    cwd=args.project,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                # Killed mid-stream: once it has enriched something, a random while later.
                waiting = unenriched(db, ids)
                deadline = time.monotonic() + 30
                while unenriched(db, ids) == waiting and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(random.uniform(0.1, 1.0))  # noqa: S311 - not cryptographic
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            pending = unenriched(db, ids)
            worker = subprocess.Popen(
                command,
                env=env,
                cwd=args.project,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            last, still = -1, time.monotonic()
            while time.monotonic() - still < 2.5 * VISIBILITY:
                now = unenriched(db, ids)
                if now != last:
                    last, still = now, time.monotonic()
                time.sleep(0.5)
            lost = last
            client.send_task("notes.sweep", queue=queue)
            deadline = time.monotonic() + 30
            while unenriched(db, ids) and time.monotonic() < deadline:
                time.sleep(0.5)
            after_sweep = unenriched(db, ids)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
    finally:
        if args.broker == "amqp":
            with client.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
        client.close()
        redis.Redis.from_url(redis_url).flushdb()
        redis.Redis.from_url(REDIS, db=0).delete(f"test-claim:{redis_db}")
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"{args.broker}: {args.kills} whole-worker SIGKILLs, {len(ids)} notes queued,"
        f" {pending} not yet enriched at the last kill; lost by the broker: {lost};"
        f" still not enriched after one notes.sweep: {after_sweep}"
    )
    sys.exit(1 if after_sweep else 0)


if __name__ == "__main__":
    main()
