"""Sending a task with kombu alone, as Celery would send it: what web does with tracing off.

Celery's app is the larger part of what a first send imports (about 6.5 MB of a web process's
memory, against 2.9 MB for kombu alone, the template's bench/ measured), and all a web process
asks of it is one message in Celery's protocol 2, published to the task queue. The message
below is the one `send_task` builds for a task sent by name with positional arguments: a worker
cannot tell them apart (its tests run what web sent). Trace context is not among its headers:
with tracing on, web sends through Celery, whose instrumentation adds it (task_sender.py).
"""

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.pools import ProducerPool

from .broker_options import PUBLISH_RETRY_POLICY, SENT_AT, broker_credentials, transport_options
from .settings import Settings

# The third part of a protocol 2 body: no callbacks, errbacks, chain or chord.
NO_CANVAS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
PERSISTENT = 2  # Celery's default delivery mode: RabbitMQ keeps the message across a restart
# Connections (and producers) kept for sends: sends run in the thread pool, and one beyond these
# waits for its turn. Celery's own default.
POOL_LIMIT = 10


class KombuSender:
    def __init__(self, settings: Settings) -> None:
        connection = Connection(  # type: ignore[no-untyped-call]
            settings.celery_broker_url,
            connect_timeout=settings.redis_timeout_seconds,
            transport_options=transport_options(settings),
            credential_provider=broker_credentials(settings),
        )
        # Pools of its own, not kombu's process-wide ones (kombu.pools.producers): closing those
        # closes them for everything else in the process that sends to the same broker.
        self._connections = connection.Pool(limit=POOL_LIMIT)  # type: ignore[no-untyped-call]
        self._producers = ProducerPool(self._connections, limit=POOL_LIMIT)  # type: ignore[no-untyped-call]
        name = settings.task_queue
        # Declared as Celery declares its default queue, which the worker consumes.
        exchange = Exchange(name, "direct")  # type: ignore[no-untyped-call]
        self._queue = Queue(name, exchange, routing_key=name)  # type: ignore[no-untyped-call]
        # Celery's name for a process that sends without being a worker.
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"

    def send_task(
        self, name: str, args: Sequence[Any], headers: dict[str, Any] | None = None
    ) -> None:
        task_id = str(uuid.uuid4())
        message_headers = {
            "lang": "py",
            "task": name,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr(list(args)),
            "kwargsrepr": "{}",
            "origin": self._origin,
            "ignore_result": None,  # as send_task leaves it: the app's setting decides
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
            **(headers or {}),
            SENT_AT: time.time(),
        }
        with self._producers.acquire(block=True) as producer:  # type: ignore[no-untyped-call]
            producer.publish(
                (list(args), {}, NO_CANVAS),
                exchange="",  # the default exchange, straight to the queue, as Celery does
                routing_key=self._queue.name,
                serializer="json",
                headers=message_headers,
                delivery_mode=PERSISTENT,
                correlation_id=task_id,
                declare=[self._queue],
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )

    def close(self) -> None:
        self._producers.force_close_all()  # type: ignore[no-untyped-call]
        self._connections.force_close_all()
