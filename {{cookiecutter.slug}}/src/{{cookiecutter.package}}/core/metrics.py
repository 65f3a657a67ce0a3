"""Observability: Prometheus metrics for web (per request) and worker (per task).

Where several OS processes sit behind one scrape target (web with WEB_CONCURRENCY > 1, the
prefork worker), each writes its samples to files under PROMETHEUS_MULTIPROC_DIR and the scrape
adds them all up. prometheus_client picks files or memory when it is first imported, so the
variable is set before that: by web/server.py before it spawns its children, by __main__.py for the
worker. A single web process keeps its samples in memory, which costs less per request.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"


class ProcessFiles(Collector):
    """Every process's samples, added up from its file in the folder.

    A process creates its file empty and sizes it a moment later (prometheus_client's
    MmapedDict), when it first counts something: a prefork child after each recycle. Its own
    collector reads such a file as broken and fails the whole scrape, a 500 where the metrics
    should be. An empty file holds no sample yet: this one leaves it out.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def collect(self) -> Iterable[Metric]:
        files = [str(path) for path in self.folder.glob("*.db") if path.stat().st_size]
        metrics: list[Metric] = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
        return metrics


def scrape_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else `registry`."""
    if MULTIPROCESS not in os.environ:
        return registry
    merged = CollectorRegistry()
    merged.register(ProcessFiles(os.environ[MULTIPROCESS]))
    return merged


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer",
            ["method", "route"],
            registry=registry,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "Requests being answered",
            multiprocess_mode="livesum",
            registry=registry,
        )
        # `labels()` checks and looks up its arguments on every call; a request's metrics are
        # found in one dict lookup instead (a third of their cost per request).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        if key not in self._children:
            self._children[key] = (
                self.requests.labels(method, route, status),
                self.latency.labels(method, route),
            )
        count, latency = self._children[key]
        count.inc()
        latency.observe(seconds)


class TaskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Counter(
            "celery_tasks_total", "Tasks finished", ["task", "outcome"], registry=registry
        )
        self.duration = Histogram(
            "celery_task_duration_seconds", "Task run time", ["task"], registry=registry
        )
        self.retries = Counter(
            "celery_task_retries_total", "Retries scheduled", ["task"], registry=registry
        )
        self.dead_lettered = Counter(
            "celery_tasks_dead_lettered_total",
            "Tasks failed for good",
            ["task"],
            registry=registry,
        )
        self.mails = Counter(
            "mails_total",
            "Mails by kind and outcome (sent, failed, skipped)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.last_heartbeat = Gauge(
            "heartbeat_last_run_timestamp_seconds",
            "When the clock's heartbeat last ran",
            multiprocess_mode="max",
            registry=registry,
        )


class FlagMetrics:
    """Feature flag evaluations (core/flags.py), in web and worker alike."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "feature_flag_evaluations_total",
            "Flag evaluations, by the variant they gave (`default`: nothing set the flag; "
            "`error`: evaluation failed and gave the declared default)",
            ["flag", "variant"],
            registry=registry,
        )
        self.errors = Counter(
            "feature_flag_evaluation_errors_total",
            "Flag evaluations that failed, by OpenFeature error code",
            ["flag", "error"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}  # as in HttpMetrics

    def count(self, flag: str, variant: str) -> None:
        key = (flag, variant)
        if key not in self._children:
            self._children[key] = self.evaluations.labels(flag, variant)
        self._children[key].inc()

    def error(self, flag: str, code: str) -> None:
        self.errors.labels(flag, code).inc()
