"""Jobs across releases: a message this worker cannot run (a newer release's task, a body it
cannot decode) is kept in `dead_letters` with its raw content, never acknowledged into nothing,
and `jobs dead redrive` sends it once a worker that can run it is there. Redis and RabbitMQ."""

import base64
import json
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from kombu.entity import Exchange, Queue

from .conftest import Process, broker_client, wait_until
from .test_dead_letters import jobs, queue_depth, results

UNREADABLE = "(unreadable message)"  # the task name of a message that has none to read
# The next release, in one file: a task this release's worker does not have. A worker started
# with it on PYTHONPATH is a worker of that release (Python imports sitecustomize at start).
NEWER_RELEASE = """
import logging

from celery import shared_task


@shared_task(bind=True, name="notes.archive")
def archive(self, note_id, reason="old"):
    logging.getLogger("newer").warning(
        "newer release task ran: note_id=%s reason=%s request_id=%s",
        note_id, reason, getattr(self.request, "request_id", None),
    )
"""


def kept(db: psycopg.Connection[Any], task: str, after: int) -> list[tuple[Any, ...]]:
    """The dead letters of `task` since the one with the id `after`."""
    return db.execute(
        "SELECT id, task_id, error, request_id, message, redriven_from FROM dead_letters"
        " WHERE task_name = %s AND id > %s ORDER BY id",
        [task, after],
    ).fetchall()


def last_id(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT coalesce(max(id), 0) FROM dead_letters").fetchone()
    return int(row[0]) if row else 0


def test_a_newer_releases_task_is_kept_and_runs_once_redriven_to_a_newer_worker(
    start: Callable[..., Any],
    queue_env: dict[str, str],
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    env, after = queue_env, last_id(db)
    old: Process = start("worker", **env)
    old.wait_for_log("ready")
    # A newer web sends it while this release's worker runs (mid-deploy).
    sender = broker_client(env)
    sender.send_task(
        "notes.archive",
        args=[7],
        kwargs={"reason": "mid-deploy"},
        queue=env["TASK_QUEUE"],
        headers={"request_id": "req-newer-0001"},
    )
    sender.close()
    ((letter_id, task_id, error, request_id, message, _),) = wait_until(
        lambda: kept(db, "notes.archive", after), timeout=20
    )
    assert "NotRegistered" in error
    assert request_id == "req-newer-0001"
    assert message["headers"]["task"] == "notes.archive"
    assert json.loads(base64.b64decode(message["body"]))[:2] == [[7], {"reason": "mid-deploy"}]
    assert queue_depth(env) == 0  # taken off the queue only once kept
    assert old.popen.poll() is None
    (line,) = [r for r in results(jobs(env, "dead", "list", "--waiting")) if r["id"] == letter_id]
    assert (line["task"], line["args"], line["raw_message"]) == (
        "notes.archive",
        '7, reason="mid-deploy"',
        True,
    )

    # The deploy ends: every worker runs the newer release. Then the redrive.
    assert old.stop(signal.SIGTERM) == 0
    (tmp_path / "sitecustomize.py").write_text(NEWER_RELEASE)
    newer: Process = start("worker", **env, PYTHONPATH=str(tmp_path))
    newer.wait_for_log("ready")
    (redriven,) = results(jobs(env, "dead", "redrive", str(letter_id)))
    assert redriven["redriven"] is True
    ran = newer.wait_for_log("newer release task ran", timeout=20)
    assert "note_id=7 reason=mid-deploy request_id=req-newer-0001" in ran["event"]
    assert ran["task_id"] == redriven["redriven_task_id"] != task_id
    assert len(kept(db, "notes.archive", after)) == 1  # it ran: no new dead letter


def test_a_message_that_cannot_be_decoded_is_kept_as_it_came(
    start: Callable[..., Any], queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    env, after = queue_env, last_id(db)
    worker: Process = start("worker", **env)
    worker.wait_for_log("ready")
    garbage = b"\xff\xfe{not: json"
    name = env["TASK_QUEUE"]
    queue = Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
    # Bytes with no task headers at all, and a task this worker has whose body is garbage.
    known = {"task": "notes.enrich", "id": secrets.token_hex(16), "lang": "py", "retries": 0}
    with broker_client(env).connection_for_write() as conn:
        for headers in ({}, known):
            conn.Producer().publish(
                garbage,
                exchange=queue.exchange,
                routing_key=queue.routing_key,
                declare=[queue],
                content_type="application/json",
                content_encoding="utf-8",
                headers=headers,
            )
    ((letter_id, _, error, _, message, _),) = wait_until(
        lambda: kept(db, UNREADABLE, after), timeout=20
    )
    assert base64.b64decode(message["body"]) == garbage
    assert message["content_type"] == "application/json"
    assert "Decode" in error or "JSON" in error
    ((_, task_id, _, _, body_kept, _),) = wait_until(
        lambda: kept(db, "notes.enrich", after), timeout=20
    )
    assert task_id == known["id"]
    assert base64.b64decode(body_kept["body"]) == garbage
    assert queue_depth(env) == 0
    assert worker.popen.poll() is None

    # Sent again byte for byte: still garbage, so kept again, pointing at where it came from.
    (redriven,) = results(jobs(env, "dead", "redrive", str(letter_id)))
    assert redriven["redriven"] is True
    rows = wait_until(
        lambda: len(kept(db, UNREADABLE, after)) == 2 and kept(db, UNREADABLE, after), timeout=20
    )
    assert rows[1][5] == letter_id
    assert base64.b64decode(rows[1][4]["body"]) == garbage
