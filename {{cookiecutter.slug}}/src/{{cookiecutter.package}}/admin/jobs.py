"""`python -m {{ cookiecutter.package }} jobs dead list|redrive|purge`, `jobs queues`: operate the job
system from a shell (factor XII), from the same build and config as the worker.

    jobs dead list [--task NAME] [--since 2h|2026-12-01T10:00] [--limit N] [--waiting]
    jobs dead redrive ID... | --all [--task NAME]
    jobs dead purge --older-than 30d
    jobs queues

Each result is one JSON line on stdout; bad input is one line and a non-zero exit. It sends
tasks as web does, with none of the worker's machinery.

A redrive sends the task again with its original arguments and request id, under a new task id,
and marks its row with that id and the time; the row is kept, as the audit trail. Marking and
sending are one step: the row is updated (`WHERE redriven_at IS NULL`, which waits for any other
redrive of the row to finish) inside the transaction that then sends the task, and committed
only once the broker has taken it. Two redrives of one row, in sequence or from two terminals
at once, send it once; a send the broker refuses leaves the row as it was, to redrive later.
"""

import argparse
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from uuid import uuid4

import orjson
import sqlalchemy.exc
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from kombu.messaging import Producer
from sqlalchemy import Engine, delete, func, select, update

from ..core.broker import create_celery
from ..core.db import create_unpooled_db_engine
from ..core.dead_letters import SENT_AT, send_again
from ..core.logging import configure_logging
from ..core.models import DeadLetter
from ..core.settings import Settings, fail, load_settings
from ..core.telemetry import start_tracing, tracing_enabled

EX_DATAERR = 65  # sysexits.h: the input was wrong
EX_UNAVAILABLE = 69  # sysexits.h: a service it needs is unavailable
EX_TEMPFAIL = 75  # sysexits.h: try again later
ARGS_SUMMARY = 120  # characters of a dead letter's arguments that `dead list` shows
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message}", EX_DATAERR)


def duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `7d`, `1w`."""
    if (match := DURATION.fullmatch(text.strip())) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h, 7d or 1w")
    return timedelta(seconds=float(match[1]) * UNITS[match[2]])


def moment(text: str) -> datetime:
    """A duration back from now (`2h`), or an ISO 8601 date and time (UTC unless it says)."""
    try:
        return datetime.now(UTC) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (2h) nor an ISO 8601 time (2026-12-01T10:00)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def limit(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 10000")
    return int(text)


def row_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise argparse.ArgumentTypeError(f"{text!r} is not a dead letter id")
    return int(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="jobs")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("queues", prog="jobs queues", help="depth and oldest message per queue")
    dead = commands.add_parser("dead", prog="jobs dead", help="dead letters")
    actions = dead.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", prog="jobs dead list", help="newest first")
    listing.add_argument("--task", help="only this task name")
    listing.add_argument("--since", type=moment, help="a duration back (2h) or an ISO time")
    listing.add_argument("--limit", type=limit, default=100, metavar="N", help="default 100")
    listing.add_argument("--waiting", action="store_true", help="only those not redriven yet")

    redrive = actions.add_parser("redrive", prog="jobs dead redrive", help="send them again")
    redrive.add_argument("ids", nargs="*", type=row_id, metavar="ID")
    redrive.add_argument("--all", action="store_true", help="every dead letter not redriven")
    redrive.add_argument("--task", help="with --all: only this task name")

    purge = actions.add_parser("purge", prog="jobs dead purge", help="delete old dead letters")
    purge.add_argument("--older-than", type=duration, required=True, metavar="DURATION")

    args = parser.parse_args(argv)
    if args.command == "dead" and args.action == "redrive":
        if bool(args.ids) == args.all:
            redrive.error("give dead letter ids, or --all (not both)")
        if args.task is not None and not args.all:
            redrive.error("--task goes with --all")
    return args


def emit(line: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.flush()


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary(args: Any, kwargs: Any) -> str:
    """`42, 'x', size=3`: the arguments as a call would show them, cut at ARGS_SUMMARY."""
    parts = [orjson.dumps(arg).decode() for arg in args or []]
    parts += [f"{key}={orjson.dumps(value).decode()}" for key, value in (kwargs or {}).items()]
    text = ", ".join(parts)
    return text if len(text) <= ARGS_SUMMARY else text[: ARGS_SUMMARY - 1] + "…"


def dead_list(engine: Engine, args: argparse.Namespace) -> None:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(args.limit)
    if args.task is not None:
        query = query.where(DeadLetter.task_name == args.task)
    if args.since is not None:
        query = query.where(DeadLetter.failed_at >= args.since)
    if args.waiting:
        query = query.where(DeadLetter.redriven_at.is_(None))
    with engine.connect() as conn:
        for row in conn.execute(query):
            emit(
                {
                    "id": row.id,
                    "task": row.task_name,
                    "args": summary(row.args, row.kwargs),
                    "error": row.error,
                    "attempts": row.attempts,
                    "request_id": row.request_id,
                    "failed_at": _timestamp(row.failed_at),
                    "redriven_at": _timestamp(row.redriven_at),
                    "redriven_task_id": row.redriven_task_id,
                    "redriven_from": row.redriven_from,
                    "raw_message": row.message is not None,
                    "task_id": row.task_id,
                }
            )


def dead_purge(engine: Engine, older_than: timedelta) -> None:
    cutoff = datetime.now(UTC) - older_than
    with engine.begin() as conn:
        purged = conn.execute(delete(DeadLetter).where(DeadLetter.failed_at < cutoff)).rowcount
    emit({"purged": purged, "failed_before": cutoff.isoformat()})


@contextmanager
def _redrive_span(tracing: Any, row: Any) -> Iterator[None]:
    """With tracing on: a new trace for the redrive, linked to the trace the task failed in."""
    if tracing is None:
        yield
        return
    from opentelemetry import trace  # only with tracing on: nothing of it is imported otherwise
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    links = []
    if row.trace_parent:
        old = TraceContextTextMapPropagator().extract({"traceparent": row.trace_parent})
        links.append(trace.Link(trace.get_current_span(old).get_span_context()))
    tracer = trace.get_tracer(__name__, tracer_provider=tracing.provider)
    attributes = {"dead_letter.id": row.id, "celery.task_name": row.task_name}
    with tracer.start_as_current_span(
        "redrive", context=Context(), links=links, attributes=attributes
    ):
        yield


def _redrive_one(
    engine: Engine,
    celery: Celery,
    producer: Any,
    settings: Settings,
    tracing: Any,
    letter_id: int,
) -> dict[str, Any]:
    task_id = str(uuid4())
    with engine.begin() as conn:
        # Waits while another redrive holds the row, then finds it marked: sent once.
        row = conn.execute(
            update(DeadLetter)
            .where(DeadLetter.id == letter_id, DeadLetter.redriven_at.is_(None))
            .values(redriven_at=func.now(), redriven_task_id=task_id)
            .returning(*DeadLetter.__table__.c)
        ).first()
        if row is None:
            done = conn.execute(
                select(DeadLetter.redriven_at, DeadLetter.redriven_task_id).where(
                    DeadLetter.id == letter_id
                )
            ).one()
            return {
                "id": letter_id,
                "redriven": False,
                "reason": "already redriven",
                "redriven_at": _timestamp(done.redriven_at),
                "redriven_task_id": done.redriven_task_id,
            }
        with _redrive_span(tracing, row):
            send_again(celery, producer, row, task_id, settings.task_queue)  # raises: row unmarked
    return {
        "id": letter_id,
        "task": row.task_name,
        "redriven": True,
        "redriven_at": _timestamp(row.redriven_at),
        "redriven_task_id": task_id,
        "request_id": row.request_id,
    }


def dead_redrive(engine: Engine, settings: Settings, args: argparse.Namespace) -> None:
    if args.ids:
        ids = list(dict.fromkeys(args.ids))
        with engine.connect() as conn:
            found = set(conn.scalars(select(DeadLetter.id).where(DeadLetter.id.in_(ids))))
        if missing := [str(i) for i in ids if i not in found]:
            fail(f"jobs dead redrive: no dead letter with id {', '.join(missing)}", EX_DATAERR)
    else:
        query = select(DeadLetter.id).where(DeadLetter.redriven_at.is_(None))
        if args.task is not None:
            query = query.where(DeadLetter.task_name == args.task)
        with engine.connect() as conn:
            ids = list(conn.scalars(query.order_by(DeadLetter.id)))
    tracing = start_tracing("admin", redis=False) if tracing_enabled() else None
    celery = create_celery(settings)
    # RabbitMQ confirms each publish, so a row is committed only once the broker has the task.
    options = {"confirm_publish": True}
    connection = celery.connection_for_write(transport_options=options)
    try:
        producer = Producer(connection)  # type: ignore[no-untyped-call]
        for letter_id in ids:
            try:
                emit(_redrive_one(engine, celery, producer, settings, tracing, letter_id))
            except sqlalchemy.exc.OperationalError as exc:
                fail(
                    f"jobs dead redrive: {letter_id}: left as it was ({type(exc).__name__}:"
                    " the database, or another redrive of it still running); run again",
                    EX_TEMPFAIL,
                )
            except (BrokerError, OSError, *connection.connection_errors) as exc:
                fail(
                    f"jobs dead redrive: {letter_id}: left as it was, the broker did not take it"
                    f" ({type(exc).__name__}); run again once it is reachable",
                    EX_UNAVAILABLE,
                )
    finally:
        connection.release()
        if tracing is not None:
            tracing.shutdown()


def _redis_queue(channel: Any, name: str) -> tuple[int, float | None]:
    """Waiting messages and the oldest one's send time, from kombu's Redis lists (the list's
    right end is the next out: the oldest, once per priority level)."""
    client = channel.client
    # kombu adds the key prefix (REDIS_KEY_PREFIX) to the commands it sends itself, LLEN among
    # them; LINDEX it does not know, so the prefix is spelled out for it.
    prefix = getattr(channel, "global_keyprefix", "") or ""
    depth, oldest = 0, None
    for priority in channel.priority_steps:
        key = channel._q_for_pri(name, priority)
        depth += client.llen(key)
        if (last := client.lindex(prefix + key, -1)) is not None:
            sent = _sent_at(orjson.loads(last).get("headers"))
            if sent is not None and (oldest is None or sent < oldest):
                oldest = sent
    return depth, oldest


def _amqp_queue(channel: Any, name: str) -> tuple[int, float | None]:
    """Ready messages, and the send time of the first: looked at and handed straight back."""
    try:
        depth = channel.queue_declare(name, passive=True).message_count
    except channel.connection.client.channel_errors:
        return 0, None  # no such queue (yet): nothing waits
    if depth == 0 or (first := channel.basic_get(name, no_ack=False)) is None:
        return 0, None
    channel.basic_reject(first.delivery_tag, requeue=True)  # back where it was, at the head
    return depth, _sent_at(first.headers)


def _sent_at(headers: Any) -> float | None:
    value = headers.get(SENT_AT) if isinstance(headers, dict) else None
    return float(value) if isinstance(value, int | float) else None


def queues(settings: Settings) -> None:
    celery = create_celery(settings)
    with celery.connection_for_read() as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except (BrokerError, OSError, *conn.connection_errors) as exc:
            fail(f"jobs queues: the broker is unreachable ({type(exc).__name__})", EX_UNAVAILABLE)
        scheme = conn.transport.driver_type
        for name in celery.amqp.queues:
            if scheme == "redis":
                depth, oldest = _redis_queue(conn.default_channel, name)
            else:
                # A channel of its own: a failed passive declare closes the channel it is on.
                with conn.channel() as channel:
                    depth, oldest = _amqp_queue(channel, name)
            age = round(max(0.0, time.time() - oldest), 3) if oldest is not None else None
            emit({"queue": name, "broker": scheme, "depth": depth, "oldest_age_seconds": age})


def main() -> None:
    args = parse(sys.argv[2:])
    settings = load_settings()
    configure_logging(settings.log_level, trace_ids=tracing_enabled())
    if args.command == "queues":
        queues(settings)
        return
    engine = create_unpooled_db_engine(settings)
    try:
        if args.action == "list":
            dead_list(engine, args)
        elif args.action == "redrive":
            dead_redrive(engine, settings, args)
        else:
            dead_purge(engine, args.older_than)
    finally:
        engine.dispose()
