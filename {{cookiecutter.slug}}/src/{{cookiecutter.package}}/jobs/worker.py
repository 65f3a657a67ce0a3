"""Factor VIII, concurrency: the `worker` process type runs Celery tasks from the broker.

What keeps a job from being lost or silently dropped is configured in core/broker.py; this
module adds what only a worker has: its log lines per task, its metrics and its own engine.
"""

import logging
import os
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis
import structlog
from celery import Celery, signals
from celery.apps import worker as celery_worker
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from ..core.broker import configure_celery
from ..core.db import create_db_engine, create_unpooled_db_engine
from ..core.dead_letters import mark_succeeded, waiting_by_task
from ..core.flags import EVALUATED, Flags, create_flags
from ..core.logging import configure_logging
from ..core.metrics import TaskMetrics, scrape_registry
from ..core.ports import in_use, port_unavailable
from ..core.redis_client import redis_options
from ..core.settings import Settings, load_settings
from ..core.telemetry import start_tracing, tracing_enabled
from .deliveries import Deliveries
from .requeued import Requeued

if TYPE_CHECKING:
    from ..core.tracing import Tracing  # imports OpenTelemetry: never at run time when off

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
        self.tracing: Tracing | None = None  # set in each pool child (connect_tracing)

    @cached_property
    def metrics(self) -> TaskMetrics:
        # Made on first use, by the processes that run tasks: web and clock only send them.
        return TaskMetrics(self.registry)

    @cached_property
    def engine(self) -> Engine:
        # Made on first use, which is inside each prefork child: no pool crosses a fork.
        engine = create_db_engine(self.settings)
        if self.tracing is not None:
            self.tracing.instrument_engine(engine)
        return engine

    @cached_property
    def redis(self) -> redis.Redis:
        # Made in each child on first use, like the engine: no connection crosses a fork.
        url, options = redis_options(self.settings)  # with REDIS_URL_FILE: read at each connect
        return redis.Redis.from_url(url, **options)

    @cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries(
            self.redis, self.settings.redis_key_prefix, self.settings.task_max_deliveries
        )

    @cached_property
    def requeued(self) -> Requeued:
        seconds = self.settings.broker_visibility_timeout_seconds
        return Requeued(self.redis, self.settings.redis_key_prefix, seconds)

    @cached_property
    def keeper_engine(self) -> Engine:
        # The main process's own: it keeps unrunnable messages (jobs/unrunnable.py) and counts
        # dead letters at each scrape. Unpooled, so no connection of it is open at a fork.
        return create_unpooled_db_engine(self.settings)

    @cached_property
    def flags(self) -> Flags:
        # Also made in each child, where its flag file watcher thread must run: a thread
        # started before the fork would not exist in the children.
        return create_flags(self.settings, self.registry)


def create_worker_app(settings: Settings) -> WorkerApp:
    app = WorkerApp(settings, main="{{ cookiecutter.package }}", set_as_current=False)
    configure_celery(app, settings)
    app.conf.include = ["{{ cookiecutter.package }}.jobs.tasks", "{{ cookiecutter.package }}.jobs.mail"]
    # Keeps the messages Celery's own consumer would drop: see jobs/unrunnable.py.
    app.conf.worker_consumer = "{{ cookiecutter.package }}.jobs.unrunnable:KeepingConsumer"
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
    EVALUATED.set({})  # the flags this task evaluates, with their variants
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task_name=task.name,
        request_id=getattr(task.request, "request_id", None),
    )


def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def connect_logging(settings: Settings) -> None:
    """Keep Celery from configuring logging, and tag each task's log lines with its ids."""
    signals.setup_logging.connect(
        lambda **_: configure_logging(settings.log_level, trace_ids=tracing_enabled()), weak=False
    )
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


class DeadLetters(Collector):
    """Dead letters not redriven yet, by task, counted in PostgreSQL at each scrape: a gauge an
    alert can fire on (any non-zero), which falls back to zero once they are redriven."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app

    def collect(self) -> Any:
        try:
            waiting = waiting_by_task(self.app.keeper_engine)
        except Exception as exc:  # database unreachable: no sample, and the scrape still works
            log.warning("dead letter count unavailable", error=type(exc).__name__)
            return
        gauge = GaugeMetricFamily(
            "celery_dead_letters", "Dead letters waiting for a redrive", labels=["task"]
        )
        # Every task this worker runs has a sample, zero included: an alert sees it from the start.
        known = {name for name in self.app.tasks if not name.startswith("celery.")}
        for name in sorted(known | set(waiting)):
            gauge.add_metric([name], waiting.get(name, 0))
        yield gauge


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


def connect_redrive_outcomes(app: WorkerApp) -> None:
    """A redriven task that runs to the end marks the dead letter it came from (its failure
    makes a new row instead: jobs/tasks.py). Any task, this release's or a newer one's."""

    def succeeded(sender: Any, **_: Any) -> None:
        origin = getattr(sender.request, "redriven_from", None)
        if isinstance(origin, int):
            mark_succeeded(app.engine, origin)

    signals.task_success.connect(succeeded, weak=False)


def connect_tracing(app: WorkerApp) -> None:
    """Each pool child sets up its own tracing once forked, and flushes it whenever it exits.

    Not before the fork: the exporter's thread would not survive it. And at the child's exit:
    billiard ends a child with os._exit (recycled, or at the warm shutdown), which skips every
    exit hook, so spans still batched would be lost without a word (opentelemetry-python-contrib
    issue 4916).
    """
    if not tracing_enabled():
        return

    def start(**_: Any) -> None:
        app.tracing = start_tracing("worker")

    def flush(**_: Any) -> None:
        if app.tracing is not None:
            app.tracing.shutdown()

    signals.worker_process_init.connect(start, weak=False)
    signals.worker_process_shutdown.connect(flush, weak=False)


def serve_metrics(app: WorkerApp) -> int:
    """Serve /metrics on the first free port of the workers' range; the port it took.

    Several workers on one host (factor VIII) take WORKER_METRICS_PORT, the next port, and so
    on, in the order they start: N workers on a host are on the first N ports of the range, and
    each says which one it took in its "metrics listening" line. In a container every worker
    has the network to itself and gets WORKER_METRICS_PORT. When the whole range is taken (by
    something else, or by too many workers) the process stops, naming the range and setting.
    """
    registry = scrape_registry(app.registry)
    registry.register(QueueDepth(app))
    registry.register(DeadLetters(app))
    first = app.settings.worker_metrics_port
    ports = range(first, min(first + app.settings.worker_metrics_ports, 65536))
    for port in ports:
        try:
            start_http_server(port, registry=registry)
        except OSError as exc:
            if in_use(exc) and port != ports[-1]:
                continue
            if len(ports) == 1:
                port_unavailable(port, "WORKER_METRICS_PORT", exc)
            port_unavailable(f"{first}-{port}", "WORKER_METRICS_PORT, WORKER_METRICS_PORTS", exc)
        log.info("metrics listening", port=port, path="/metrics")
        return port
    raise AssertionError("unreachable: the range has at least one port")


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, trace_ids=tracing_enabled())
    connect_logging(settings)
    app = create_worker_app(settings)
    connect_metrics(app)
    connect_redrive_outcomes(app)
    connect_tracing(app)
    serve_metrics(app)
    # The node name carries the pid: on RabbitMQ each node's control queue is exclusive to its
    # name (celery@<host> by default), so a second worker on one host would stop at start.
    node = f"worker{os.getpid()}@%h"
    # SIGTERM is Celery's warm shutdown: running tasks finish, then the process exits 0.
    # app.start, unlike app.worker_main, returns the worker's exit code.
    argv = ["--quiet", "worker", f"--loglevel={settings.log_level}", f"--hostname={node}"]
    return int(app.start([*argv, "--without-gossip", "--without-mingle"]) or 0)
