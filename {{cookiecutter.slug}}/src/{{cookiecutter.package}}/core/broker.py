"""The Celery app's configuration, shared by every process type: web and clock send tasks with it,
the worker runs them. Sending needs none of the worker's machinery, so this module imports none.

The settings below are what keep a job from being lost or silently dropped:
- late acknowledgement + reject on worker loss: a task is removed from the queue only after it
  finished, so a worker killed mid-task (SIGKILL, OOM, node loss) has it run again elsewhere;
- prefetch of 1: a worker holds one unacknowledged message per pool process, no more;
- visibility timeout (Redis broker only): how long an unacknowledged message waits before another
  worker takes it; the hard time limit and retry delays are kept below it (see settings.py);
- JSON only, so a message can be read by any version of the code and never unpickled;
- every message stamped with the time it was sent, for `jobs queues` (core/dead_letters.py).

A Redis broker URL from a file (BROKER_URL_FILE, or REDIS_URL_FILE when it is the broker) has its
password read again at each new broker connection; an AMQP one is read at start only.
"""

from typing import Any

from celery import Celery
from redis.credentials import CredentialProvider

from .credentials import redis_credentials
from .dead_letters import stamp_every_publish
from .secret_files import file_variable
from .settings import Settings


def _broker_credentials(app: Celery, provider: CredentialProvider) -> None:
    # Celery builds every broker connection (sending, consuming, the worker's event loop) with
    # app.amqp.Connection and has no setting for kombu's credential_provider: give it one.
    # kombu's clone() passes the provider on explicitly, so pooled copies keep it too.
    base = app.amqp.Connection

    class Connection(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("credential_provider", provider)
            super().__init__(*args, **kwargs)

    app.amqp.Connection = Connection


def configure_celery(app: Celery, settings: Settings) -> Celery:
    timeout = settings.redis_timeout_seconds
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            # kombu sweeps for messages past their visibility timeout only every interval x
            # throttle seconds (100 s by default): sweep every tenth of the timeout instead, so a
            # lost worker's tasks return within about 1.1 x the visibility timeout.
            "unacked_restore_interval": max(1, settings.broker_visibility_timeout_seconds // 10),
            "unacked_restore_throttle": 1,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # Redis broker: kombu's own keys (bindings, the unacknowledged set) under this
            # service's prefix, so services sharing one Redis never restore each other's tasks.
            "global_keyprefix": f"{settings.redis_key_prefix}:",
        },
        # Publishing from a request gives up quickly; the clock's sweep catches what is missed.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        task_default_queue=settings.task_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in PostgreSQL, where the API reads them
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_seconds,
        worker_concurrency=settings.worker_concurrency,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    field = "broker_url" if settings.broker_url is not None else "redis_url"
    provider = redis_credentials(
        settings.celery_broker_url, file_variable(field), settings.secret_file(field)
    )
    if provider is not None:
        _broker_credentials(app, provider)
    stamp_every_publish()
    return app


def create_celery(settings: Settings) -> Celery:
    """A Celery app that only sends: what web and clock need."""
    return configure_celery(Celery(main="{{ cookiecutter.package }}", set_as_current=False), settings)
