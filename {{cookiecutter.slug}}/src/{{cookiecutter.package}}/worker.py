"""Factor VIII, concurrency: the `worker` process type runs Celery tasks from the broker.

The settings below are what keep a job from being lost or silently dropped:
- late acknowledgement + reject on worker loss: a task is removed from the queue only after it
  finished, so a worker killed mid-task (SIGKILL, OOM, node loss) has it run again elsewhere;
- prefetch of 1: a worker holds one unacknowledged message per pool process, no more;
- visibility timeout (Redis broker only): how long an unacknowledged message waits before another
  worker takes it; the hard time limit and retry delays are kept below it (see settings.py);
- JSON only, so a message can be read by any version of the code and never unpickled.
"""

import logging
import sys
import time
from functools import cached_property
from typing import Any

import structlog
from celery import Celery, signals
from celery.apps import worker as celery_worker
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from .db import create_db_engine
from .logging import configure_logging
from .metrics import TaskMetrics, scrape_registry
from .settings import Settings, load_settings

log = structlog.get_logger(__name__)


class Worker(celery_worker.Worker):  # type: ignore[misc]
    """Celery's worker, minus the one notice it print()s: `worker_shutting_down` logs it."""

    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        celery_worker.install_worker_term_handler(worker, verbose=False)


class WorkerApp(Celery):  # type: ignore[misc]
    """A Celery app that carries its settings, its metrics and a lazily made database engine."""

    @cached_property
    def Worker(self) -> type[Worker]:
        return self.subclass_with_self(Worker)  # type: ignore[no-any-return]

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.registry = CollectorRegistry()

    @cached_property
    def metrics(self) -> TaskMetrics:
        # Made on first use, by the processes that run tasks: web and clock only send them.
        return TaskMetrics(self.registry)

    @cached_property
    def engine(self) -> Engine:
        # Made on first use, which is inside each prefork child: no pool crosses a fork.
        return create_db_engine(self.settings)


def create_celery(settings: Settings) -> WorkerApp:
    timeout = settings.redis_timeout_seconds
    app = WorkerApp(settings, main="{{ cookiecutter.package }}", set_as_current=False)
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
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        include=["{{ cookiecutter.package }}.tasks"],
    )
    return app


def _log_received(request: Any, **_: Any) -> None:
    # Replaces Celery's own "received" line (silenced below), which has no request id.
    log.info(
        "task received",
        task_id=request.id,
        task_name=request.name,
        request_id=request.request_dict.get("request_id"),
    )


def _log_shutting_down(sig: str, how: str, **_: Any) -> None:
    log.info("worker shutting down", signal=sig, how=how)


def _bind_task_context(task: Any, task_id: str, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task_name=task.name,
        request_id=getattr(task.request, "request_id", None),
    )


def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def connect_logging(settings: Settings) -> None:
    """Keep Celery from configuring logging, and tag each task's log lines with its ids."""
    signals.setup_logging.connect(lambda **_: configure_logging(settings.log_level), weak=False)
    signals.task_received.connect(_log_received, weak=False)
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    signals.worker_shutting_down.connect(_log_shutting_down, weak=False)
    signals.task_prerun.connect(_bind_task_context, weak=False)
    signals.task_postrun.connect(_clear_task_context, weak=False)


class QueueDepth(Collector):
    """Messages waiting in the task queue, asked of the broker at each scrape."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app

    def collect(self) -> Any:
        try:
            with self.app.connection_for_read() as conn:
                try:
                    waiting = conn.default_channel.queue_declare(
                        self.app.settings.task_queue, passive=True
                    ).message_count
                except conn.channel_errors:  # no such queue yet (Redis: an empty one)
                    waiting = 0
        except Exception as exc:  # broker unreachable: no sample, and the scrape still works
            log.warning("queue depth unavailable", error=type(exc).__name__)
            return
        yield GaugeMetricFamily("celery_queue_depth", "Messages waiting in the queue", waiting)


def connect_metrics(app: WorkerApp) -> None:
    """Count, time and classify every task the pool runs."""
    started: dict[str, float] = {}

    def prerun(task_id: str, **_: Any) -> None:
        started[task_id] = time.perf_counter()

    def postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
        app.metrics.tasks.labels(task.name, (state or "unknown").lower()).inc()
        if (began := started.pop(task_id, None)) is not None:
            app.metrics.duration.labels(task.name).observe(time.perf_counter() - began)

    def retried(request: Any, **_: Any) -> None:
        app.metrics.retries.labels(request.task).inc()

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    signals.task_retry.connect(retried, weak=False)


def serve_metrics(app: WorkerApp) -> None:
    registry = scrape_registry(app.registry)
    registry.register(QueueDepth(app))
    start_http_server(app.settings.worker_metrics_port, registry=registry)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    connect_logging(settings)
    app = create_celery(settings)
    connect_metrics(app)
    serve_metrics(app)
    # SIGTERM is Celery's warm shutdown: running tasks finish, then the process exits 0.
    # app.start, unlike app.worker_main, returns the worker's exit code.
    argv = ["--quiet", "worker", f"--loglevel={settings.log_level}"]
    sys.exit(app.start([*argv, "--without-gossip", "--without-mingle"]))
