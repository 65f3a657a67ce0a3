"""Messages this worker cannot run are kept, never acknowledged into nothing.

During a rolling deploy a new `web` or `clock` can send a task an old worker does not have yet;
anything can put bytes on the queue that do not decode. Celery rejects the first (Redis then
deletes it; RabbitMQ drops it unless the queue has a dead-letter exchange) and acknowledges the
second: either way it is gone. Here each is stored in `dead_letters` with its raw content first,
and acknowledged only once stored, on Redis and RabbitMQ alike. `jobs dead redrive` sends it
again as it came, once every worker runs the release that knows it.

Why not leave it on the queue for a newer worker? An old worker that hands it back gets it again
at once: the old workers of a deploy would pass it around in a loop, and on a queue with no newer
worker it would never end. A row is seen (`jobs dead list`, the `celery_dead_letters` gauge) and
sent again on purpose.

If the row cannot be written (PostgreSQL down), the message is neither acknowledged nor
rejected: Redis hands it out again after the visibility timeout, RabbitMQ once this worker's
connection closes.
"""

from typing import Any

import structlog
from celery import signals
from celery.worker.consumer import Consumer

from ..core.dead_letters import record, unrunnable_letter

log = structlog.get_logger(__name__)


class KeepingConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, keeping what it would reject or acknowledge unread."""

    def on_unknown_message(self, body: Any, message: Any) -> None:
        if self._keep(message, "not a task message"):
            signals.task_rejected.send(sender=self, message=message, exc=None)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = message.headers.get("task") if isinstance(message.headers, dict) else None
        if self._keep(message, f"NotRegistered({name!r}): no such task in this release"):
            signals.task_unknown.send(
                sender=self, message=message, exc=exc, name=name, id=message.headers.get("id")
            )

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        if self._keep(message, repr(exc)):
            signals.task_rejected.send(sender=self, message=message, exc=exc)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._keep(message, repr(exc))

    def _keep(self, message: Any, error: str) -> bool:
        letter = unrunnable_letter(message, error)
        try:
            record(self.app.keeper_engine, letter)
        except Exception as exc:  # whatever failed, the message must not be lost
            log.error(
                "message could not be kept: left unacknowledged, to come back",
                task_name=letter["task_name"],
                task_id=letter["task_id"],
                error=type(exc).__name__,
            )
            return False
        message.ack()
        log.error(
            "message kept in dead_letters: this worker cannot run it",
            task_name=letter["task_name"],
            task_id=letter["task_id"],
            request_id=letter["request_id"],
            error=error,
        )
        return True
