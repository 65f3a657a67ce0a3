"""Bounded redelivery: a task whose worker dies mid-run every time is dead-lettered, not handed
out forever.

Late acknowledgement brings a task back whenever its worker dies before finishing (core/broker.py):
right for a worker lost once, but a task that itself kills its worker (memory exhausted, the hard
time limit, a crash in a C extension) would come back, kill the next one, and so on without end.
Only a message the broker hands out again is counted: both brokers mark it `redelivered` (Redis
when it restores an unacknowledged message, RabbitMQ when a consumer's connection dropped), so a
first delivery, nearly every task, costs no Redis call at all. Each redelivery is counted here,
in Redis, atomically (INCR), per task id and retry number: a retry is a new message and starts
again at 1. The count is taken before the task's body runs, so it survives the SIGKILL it is
there for. Past TASK_MAX_DELIVERIES the task is not run again: it fails with TooManyDeliveries
and is dead-lettered like any other failure (tasks.py), where an operator can look at it and
redrive it. A message restored before it ever ran (a worker stopped with it prefetched) has its
first delivery counted all the same: at most one death too many is assumed, never one too few.
"""

import contextlib

import redis
import structlog

log = structlog.get_logger(__name__)

# How long a count outlives its last delivery: longer than any wait for a redelivery (the
# visibility timeout, and the queue ahead of it), short enough that Redis forgets on its own.
COUNT_TTL_SECONDS = 86_400


class TooManyDeliveries(Exception):
    """Delivered more times than TASK_MAX_DELIVERIES without ever finishing."""


class Deliveries:
    def __init__(self, client: redis.Redis, namespace: str, limit: int) -> None:
        self.client = client
        self.namespace = namespace
        self.limit = limit

    def _key(self, task_id: str, retries: int) -> str:
        return f"{self.namespace}:deliveries:{task_id}:{retries}"

    def arrived(self, task_id: str, retries: int) -> None:
        """Count this redelivery; raise TooManyDeliveries when it is one too many."""
        key = self._key(task_id, retries)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, COUNT_TTL_SECONDS)
            redeliveries, _ = pipe.execute()
        count = redeliveries + 1  # and the first delivery, which no one counted
        if count > self.limit:
            self.client.delete(key)  # a redrive of the dead letter starts counting afresh
            raise TooManyDeliveries(
                f"delivered {count} times, and each time its worker died before it finished"
            )
        if count > 1:
            log.warning("task delivered again", delivery=count, limit=self.limit)

    def finished(self, task_id: str, retries: int) -> None:
        """The delivery ended (done, failed or retrying): forget its count. Best effort: a count
        left behind by a Redis outage expires on its own."""
        with contextlib.suppress(redis.exceptions.RedisError):
            self.client.delete(self._key(task_id, retries))
