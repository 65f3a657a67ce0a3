"""The worker's tasks. Each one is idempotent, because late acknowledgement means any task may
run more than once (after a worker is killed, or in rare races even twice at the same time).

Transient errors (a database or Redis hiccup, a lock held too long, a schema whose migration has
not run yet: core/schema.py) are retried with exponential backoff and full jitter; a task that
fails for good leaves a row in `dead_letters` and an error log line, so no failure is silent, and
`jobs dead redrive` can send it again.

Across releases (README, "Jobs across releases"): a task accepts every shape of arguments the
previous release sends (a new parameter comes with a default; tests/test_task_shapes.py), and a
new task ships one release before anything sends it. Each kind of work has a sweep on the
clock, so that a message a Redis worker loses when killed is sent again (README, "Nothing
enqueued is lost").
"""

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.exceptions
import sqlalchemy.exc
import structlog
from celery import Task, shared_task
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from ..core.dead_letters import record, send_again, unfinished_redrives
from ..core.flags import EVALUATED, NOTE_SUMMARY
from ..core.models import DeadLetter, Heartbeat, Note
from ..core.schema import schema_behind
from .worker import WorkerApp

log = structlog.get_logger(__name__)

TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


class ReliableTask(Task):  # type: ignore[misc]
    app: WorkerApp
    transient: tuple[type[Exception], ...] = TRANSIENT  # retried; anything else dead-letters
    # No limit of Celery's own: its default (3) would cut TASK_MAX_RETRIES short, retry() taking
    # max_retries=None as "use the default". The limit is the setting, checked in __call__.
    max_retries = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task_id, retries = self.request.id, self.request.retries
        # Only a message handed out again is counted (deliveries.py); called in-process, a task
        # has neither an id nor delivery info.
        counted = task_id is not None and bool(
            (self.request.delivery_info or {}).get("redelivered")
        )
        try:
            if counted:
                self.app.deliveries.arrived(task_id, retries)  # TooManyDeliveries: dead letter
            try:
                return super().__call__(*args, **kwargs)
            finally:
                if counted:
                    self.app.deliveries.finished(task_id, retries)
        except Exception as exc:
            if not isinstance(exc, self.transient) and not schema_behind(exc):
                raise
            settings = self.app.settings
            if self.request.retries >= settings.task_max_retries:
                raise  # out of retries: the task fails, and on_failure dead-letters it
            ceiling = min(
                settings.task_retry_backoff_max_seconds,
                settings.task_retry_backoff_seconds * 2**self.request.retries,
            )
            # Full jitter: retries of many failed tasks spread out instead of arriving together.
            countdown = random.uniform(0, ceiling)  # noqa: S311 - not cryptographic
            log.warning("retrying", error=type(exc).__name__, attempt=self.request.retries + 1)
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        log.error("task failed for good", error=repr(exc), args=args)
        self.app.metrics.dead_lettered.labels(self.name).inc()
        # A redriven task carries the id of the dead letter it came from (admin/jobs.py): failing
        # again, it gets a row of its own that points there, and the first row stays as it was.
        redriven_from = getattr(self.request, "redriven_from", None)
        traceparent = getattr(self.request, "traceparent", None)
        record(
            self.app.engine,
            {
                "task_id": task_id,
                "task_name": self.name,
                "args": list(args),
                "kwargs": dict(kwargs),
                "error": repr(exc),
                "request_id": getattr(self.request, "request_id", None),
                "attempts": self.request.retries + 1,
                "redriven_from": redriven_from if isinstance(redriven_from, int) else None,
                "trace_parent": traceparent if isinstance(traceparent, str) else None,
            },
        )


SENTENCE_END = re.compile(r"(?<=[.!?])\s")
SUMMARY_LENGTH = 200


def summarise(body: str) -> str:
    """The first sentence, cut at SUMMARY_LENGTH characters."""
    first = SENTENCE_END.split(body.strip(), maxsplit=1)[0]
    return first if len(first) <= SUMMARY_LENGTH else first[: SUMMARY_LENGTH - 1] + "…"


# notes.enrich's two statements, built once. Built in the task, each call paid for building them
# and for their cache key (the compiled cache saves only the compiling): 0.35 ms of CPU a task,
# as much as both round trips (the template's bench/, "Worker").
# FOR UPDATE: two copies of the task on one note take turns; lock_timeout bounds the wait.
NOTE_FOR_UPDATE = (
    select(Note.body, Note.owner_id).where(Note.id == bindparam("note_id")).with_for_update()
)
# No values(): the columns SET are the parameters given besides note_id.
UPDATE_NOTE = update(Note).where(Note.id == bindparam("note_id"))


@shared_task(bind=True, base=ReliableTask, name="notes.enrich")
def enrich_note(self: ReliableTask, note_id: int) -> None:
    """Count the note's words and, while the `note-summary` flag is on for its owner, store its
    summary. Running it again recomputes the same values for the same flags: idempotent."""
    with self.app.engine.begin() as conn:
        note = conn.execute(NOTE_FOR_UPDATE, {"note_id": note_id}).first()
        if note is None:
            log.warning("note is gone", note_id=note_id)
            return
        word_count = len(note.body.split())
        # The same question as the web's, for the same user: both give the same answer.
        summarised = self.app.flags.enabled(NOTE_SUMMARY, note.owner_id)
        values: dict[str, Any] = {
            "note_id": note_id,
            "word_count": word_count,
            "enriched_at": datetime.now(UTC),
        }
        if summarised:  # only then is the column touched (expand/contract: models.py)
            values["summary"] = summarise(note.body)
        conn.execute(UPDATE_NOTE, values)
    log.info(
        "note enriched",
        note_id=note_id,
        word_count=word_count,
        flags=EVALUATED.get(),  # the variant of each flag evaluated, as on the web's access line
    )


@shared_task(bind=True, base=ReliableTask, name="clock.heartbeat")
def heartbeat(self: ReliableTask) -> None:
    """Store one row per scheduled run; a redelivered run is stored once (unique task id)."""
    with self.app.engine.begin() as conn:
        conn.execute(insert(Heartbeat).values(task_id=self.request.id).on_conflict_do_nothing())
    self.app.metrics.last_heartbeat.set_to_current_time()
    log.info("heartbeat stored")


@shared_task(bind=True, base=ReliableTask, name="clock.prune")
def prune(self: ReliableTask) -> None:
    """Delete heartbeats and dead letters older than RETENTION_DAYS, so neither grows forever."""
    cutoff = datetime.now(UTC) - timedelta(days=self.app.settings.retention_days)
    with self.app.engine.begin() as conn:
        beats = conn.execute(delete(Heartbeat).where(Heartbeat.ran_at < cutoff)).rowcount
        dead = conn.execute(delete(DeadLetter).where(DeadLetter.failed_at < cutoff)).rowcount
    log.info("pruned", heartbeats=beats, dead_letters=dead)


@shared_task(bind=True, base=ReliableTask, name="notes.sweep")
def sweep_unenriched(self: ReliableTask) -> None:
    """Enqueue notes left unenriched for longer than a queued task can wait (enqueue failed),
    unless this sweep enqueued them within that wait already (requeued.py)."""
    waited = timedelta(seconds=self.app.settings.broker_visibility_timeout_seconds)
    cutoff = datetime.now(UTC) - waited
    with self.app.engine.connect() as conn:
        ids = conn.scalars(
            select(Note.id).where(Note.enriched_at.is_(None), Note.created_at < cutoff).limit(500)
        ).all()
    ids = self.app.requeued.claim(list(ids)) if ids else []
    for note_id in ids:
        enrich_note.apply_async(args=[note_id], headers={"request_id": self.request.id})
    if ids:
        log.info("re-enqueued unenriched notes", count=len(ids))


@shared_task(bind=True, base=ReliableTask, name="dead_letters.sweep")
def sweep_redrives(self: ReliableTask) -> None:
    """Send again each redrive whose task, a visibility timeout later, has neither run to the end
    nor failed again: on Redis a worker killed between taking a message and recording it loses
    it (see README, "Nothing enqueued is lost"). Sent under the same task id, so a copy that was
    only slow, not lost, makes no second dead letter; the task is idempotent like any other."""
    settings = self.app.settings
    waited = timedelta(seconds=settings.broker_visibility_timeout_seconds)
    with self.app.engine.begin() as conn:
        letters = conn.execute(unfinished_redrives(datetime.now(UTC) - waited, 100)).all()
        with self.app.producer_or_acquire() as producer:
            for letter in letters:
                send_again(self.app, producer, letter, letter.redriven_task_id, settings.task_queue)
        conn.execute(
            update(DeadLetter)
            .where(DeadLetter.id.in_([letter.id for letter in letters]))
            .values(redriven_at=func.now())
        )
    if letters:
        log.warning("redrives sent again", dead_letter_ids=[letter.id for letter in letters])
