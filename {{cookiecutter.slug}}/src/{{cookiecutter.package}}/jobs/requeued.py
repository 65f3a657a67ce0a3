"""What the clock's sweep has enqueued again, so that it does not enqueue it again and again.

The sweep (tasks.py, every 5 minutes) enqueues notes left unenriched for longer than a queued
task may wait, for the enqueues that failed. A note whose task is still queued (a backlog longer
than that wait, a retry waiting out its delay) is also unenriched, and enqueuing it at every sweep
would only grow the backlog it is stuck in. So each note the sweep enqueues is marked in Redis for
the same wait, and skipped while marked: at most one extra message per note per wait.
"""

import redis


class Requeued:
    def __init__(self, client: redis.Redis, namespace: str, seconds: int) -> None:
        self.client = client
        self.namespace = namespace
        self.seconds = seconds

    def claim(self, note_ids: list[int]) -> list[int]:
        """The notes not enqueued again within the wait, now marked as enqueued: one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for note_id in note_ids:
                pipe.set(f"{self.namespace}:requeued:note:{note_id}", 1, nx=True, ex=self.seconds)
            claimed = pipe.execute()
        return [note_id for note_id, fresh in zip(note_ids, claimed, strict=True) if fresh]
