"""Observability: Prometheus metrics for web (per request) and worker (per task).

A process with several OS processes behind one scrape target (web with WEB_CONCURRENCY > 1, the
prefork worker) keeps its samples in files under PROMETHEUS_MULTIPROC_DIR, which the entry point
(__main__.py) points at a fresh directory before prometheus_client is imported; the scrape
handler then adds up every process's files. Without that variable, samples live in memory.
"""

import os
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"


def scrape_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else `registry`."""
    if MULTIPROCESS not in os.environ:
        return registry
    merged = CollectorRegistry()
    MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[], Response]:
    """The `GET /metrics` handler: the Prometheus text format of `registry`."""
    scraped = scrape_registry(registry)

    def metrics() -> Response:
        return Response(generate_latest(scraped), media_type=CONTENT_TYPE_LATEST)

    return metrics


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
            ["method"],
            multiprocess_mode="livesum",
            registry=registry,
        )


class MetricsMiddleware:
    """Counts and times each request by its route template (`/api/v1/notes/{note_id}`), never
    by its raw path, so that label values stay few."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        start = time.perf_counter()

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = self.metrics.in_progress.labels(method)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            in_progress.dec()
            route = _route_template(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    """`/api/v1/notes/{note_id}` for a request to `/api/v1/notes/42`."""
    route = scope.get("route")  # set by the router that matched; a 404 has none
    if route is None:
        return "unmatched"
    # A route of an included router holds only its own segments (`/notes/{note_id}`); the
    # request path's leading segments are the prefixes it was included under.
    depth = route.path.count("/")
    return str(scope["path"].rsplit("/", depth)[0] + route.path)


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
        self.last_heartbeat = Gauge(
            "heartbeat_last_run_timestamp_seconds",
            "When the clock's heartbeat last ran",
            multiprocess_mode="max",
            registry=registry,
        )
