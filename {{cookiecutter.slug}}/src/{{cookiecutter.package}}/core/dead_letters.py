"""Dead letters: what is kept of a task that failed for good, or of a message no worker could run,
so that `jobs dead redrive` (admin/jobs.py) can send it again once the cause is fixed.

Written by the worker (jobs/tasks.py on a final failure, jobs/unrunnable.py for a message it
cannot run), read by the worker's metrics and by the `jobs` admin process. Nothing here imports
the worker's machinery: the admin process and web stay free of it.
"""

import base64
import json
import time
from datetime import datetime
from typing import Any

from celery import Celery, signals
from sqlalchemy import Engine, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert

from .broker_options import SENT_AT as SENT_AT  # the header `jobs queues` reads
from .models import DeadLetter

DeadLetterRow = Any  # a row of dead_letters' columns (a Core row: attribute access)

# A message's task name when it has none that can be read (no headers, an undecodable body).
UNREADABLE = "(unreadable message)"


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(SENT_AT, time.time())


def stamp_every_publish() -> None:
    """Connect `stamp_sent_at` to every task this process publishes (once, however often called)."""
    signals.before_task_publish.connect(stamp_sent_at, weak=False, dispatch_uid=SENT_AT)


def raw_message(message: Any) -> dict[str, Any]:
    """A broker message as `dead_letters.message` keeps it: enough to send it again as it came."""
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.content_encoding or "utf-8", "surrogateescape")
    headers = message.headers if isinstance(message.headers, dict) else {}
    return {
        "body": base64.b64encode(bytes(body or b"")).decode("ascii"),
        # Headers are the broker's own types (an AMQP table may hold dates): kept as JSON text.
        "headers": json.loads(json.dumps(headers, default=str)),
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
    }


def _task_arguments(message: Any) -> tuple[list[Any], dict[str, Any]]:
    """The args and kwargs of a Celery protocol 2 JSON body, for `jobs dead list`; else none."""
    try:
        args, kwargs, _ = json.loads(message.body)
    except Exception:  # anything unreadable is simply not summarised
        return [], {}
    if isinstance(args, list) and isinstance(kwargs, dict):
        return args, kwargs
    return [], {}


def unrunnable_letter(message: Any, error: str) -> dict[str, Any]:
    """The `dead_letters` row of a message no worker could run: its raw content, and what can be
    read of it (task name and id, arguments, request id) for `jobs dead list`."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    args, kwargs = _task_arguments(message)
    task_id = headers.get("id")
    if not isinstance(task_id, str):
        # No id to be unique by: a copy of this same message delivered again is kept again.
        task_id = f"unreadable-{time.time_ns()}"
    redriven_from = headers.get("redriven_from")
    request_id = headers.get("request_id")
    return {
        "task_id": task_id[:64],
        "task_name": str(headers.get("task") or UNREADABLE)[:200],
        "args": args,
        "kwargs": kwargs,
        "error": error,
        "request_id": request_id[:128] if isinstance(request_id, str) else None,
        "redriven_from": redriven_from if isinstance(redriven_from, int) else None,
        "message": raw_message(message),
        "trace_parent": _trace_parent(headers),
    }


def _trace_parent(headers: dict[str, Any]) -> str | None:
    value = headers.get("traceparent")
    return value[:64] if isinstance(value, str) else None


def record(engine: Engine, letter: dict[str, Any]) -> None:
    """Store one dead letter; the same task id stored twice (a redelivered copy) is one row."""
    with engine.begin() as conn:
        conn.execute(insert(DeadLetter).values(letter).on_conflict_do_nothing())


def waiting_by_task(engine: Engine) -> dict[str, int]:
    """Dead letters not redriven yet, by task name."""
    query = (
        select(DeadLetter.task_name, func.count())
        .where(DeadLetter.redriven_at.is_(None))
        .group_by(DeadLetter.task_name)
    )
    with engine.connect() as conn:
        return {name: count for name, count in conn.execute(query).tuples()}


def send_again(
    celery: Celery, producer: Any, letter: DeadLetterRow, task_id: str, queue: str
) -> None:
    """Publish a dead letter again under `task_id`; returns once the broker has taken it.

    A task that failed goes with its original arguments and request id; a message no worker
    could run goes byte for byte as it came. Either way it carries the id of its row, so that
    failing again makes a row pointing here, and running to the end marks this one.
    """
    retry_policy = celery.conf.task_publish_retry_policy
    if letter.message is None:
        celery.send_task(
            letter.task_name,
            args=letter.args,
            kwargs=letter.kwargs,
            task_id=task_id,
            queue=queue,
            headers={"request_id": letter.request_id, "redriven_from": letter.id},
            producer=producer,
            retry=True,
            retry_policy=retry_policy,
        )
        return
    raw = letter.message
    headers = dict(raw["headers"])
    if "id" in headers:
        headers["id"] = task_id
    headers.update({"redriven_from": letter.id, SENT_AT: time.time()})
    declared = celery.amqp.queues[queue]
    producer.publish(
        base64.b64decode(raw["body"]),
        exchange=declared.exchange,
        routing_key=declared.routing_key,
        declare=[declared],
        # Unlabelled bytes are sent as opaque data, never serialised again.
        content_type=raw["content_type"] or "application/data",
        content_encoding=raw["content_encoding"] or "binary",
        headers=headers,
        correlation_id=task_id,
        retry=True,
        retry_policy=retry_policy,
    )


def mark_succeeded(engine: Engine, letter_id: int) -> None:
    """The task redriven from this dead letter ran to the end."""
    with engine.begin() as conn:
        conn.execute(
            update(DeadLetter)
            .where(DeadLetter.id == letter_id, DeadLetter.redrive_succeeded_at.is_(None))
            .values(redrive_succeeded_at=func.now())
        )


def unfinished_redrives(before: datetime, limit: int) -> Any:
    """Dead letters redriven before `before` whose task neither ran to the end nor failed again
    (no row points at them): its message was lost (a Redis worker killed between taking it and
    recording it), or it is still waiting out its retries. Locked, so two sweeps send it once."""
    again = DeadLetter.__table__.alias("again")
    failed_again = exists().where(again.c.redriven_from == DeadLetter.id)
    return (
        select(*DeadLetter.__table__.c)
        .where(
            DeadLetter.redriven_at < before,
            DeadLetter.redrive_succeeded_at.is_(None),
            ~failed_again,
        )
        .order_by(DeadLetter.id)
        .limit(limit)
        .with_for_update(of=DeadLetter, skip_locked=True)
    )
