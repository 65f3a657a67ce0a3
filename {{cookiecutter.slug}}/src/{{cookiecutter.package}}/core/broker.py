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

from .broker_options import PUBLISH_RETRY_POLICY, broker_credentials, transport_options
from .dead_letters import stamp_every_publish
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
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.redis_timeout_seconds,
        broker_transport_options=transport_options(settings),
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
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
    provider = broker_credentials(settings)
    if provider is not None:
        _broker_credentials(app, provider)
    stamp_every_publish()
    return app


def create_celery(settings: Settings) -> Celery:
    """A Celery app that only sends: what web and clock need."""
    return configure_celery(Celery(main="{{ cookiecutter.package }}", set_as_current=False), settings)
