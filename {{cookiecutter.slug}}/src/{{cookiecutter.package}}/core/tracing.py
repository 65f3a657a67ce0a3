"""Traces with the OpenTelemetry SDK: one trace from a request through the task it enqueued, with
every SQL statement and Redis call on the way. Imported only when tracing is on (telemetry.py).

Maintained code makes the spans below the request: the OpenTelemetry instrumentations of Celery
(publish and run, with W3C trace context in the message headers), SQLAlchemy and redis-py. The
request's own span is web/server_span.py's. What the SDK reads from OTEL_* (endpoint, headers,
timeout, sampler, batch sizes, resource attributes) is left to it; this module only adds the
defaults of this service.

A SQL statement or a Redis call makes a span only inside a span that is recorded: a request or
task that is not sampled pays nothing for them, and a call outside any span (the checks of a
probe, which web/server_span.py does not trace) makes none.

Process model: each process makes its own provider once it runs (a Celery pool child after the
fork, a spawned web child in the child), so no exporter thread is inherited across a fork. At
exit, pending spans get FLUSH_AT_EXIT_SECONDS to reach the collector: the SDK's own exit hook
does not run (the processes end with os._exit, as Celery's pool children do) and would wait
30 s on a collector that does not answer.
"""

import os
import socket
import threading
from typing import Any

import redis
import redis.asyncio
import sqlalchemy.event
import structlog
from celery import current_app, signals
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import Engine
from structlog.types import EventDict

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_NAME = "{{ cookiecutter.slug }}"
FLUSH_AT_EXIT_SECONDS = 2.0
REQUEST_ID = "request_id"  # the span attribute, named as the log field and the task header


def add_trace_ids(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: the ids of the span the line is written in, if any."""
    event_dict.update(trace_ids())
    return event_dict


def trace_ids() -> dict[str, str]:
    return span_ids(trace.get_current_span().get_span_context())


def span_ids(context: trace.SpanContext) -> dict[str, str]:
    """The `trace_id` and `span_id` fields of a log line written in that span; none if invalid."""
    if not context.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
    }


def tag_request(request_id: str) -> None:
    """Put the request id on the current span: a task's run span (a request's: server_span.py)."""
    trace.get_current_span().set_attribute(REQUEST_ID, request_id)


def _resource(process: str) -> Resource:
    # One instance per process: web, worker and clock and each of their processes apart.
    defaults = {
        SERVICE_NAME: DEFAULT_SERVICE_NAME,
        SERVICE_INSTANCE_ID: f"{process}-{socket.gethostname()}-{os.getpid()}",
    }
    # What OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say wins over those defaults.
    return Resource.create({**defaults, **OTELResourceDetector().detect().attributes})


class _TaskName:
    """Stands in for a task this process sends by name and does not define."""

    def __init__(self, name: str) -> None:
        self.name = name


class _CeleryInstrumentor(CeleryInstrumentor):
    """The maintained instrumentation, with the publish span of a task sent by name covering
    the publishing.

    It keeps the publish span on the task object, looked up by name in the current app, from the
    before-publish signal to the after-publish one. web and clock send tasks they do not define
    (`send_task("notes.enrich")`), so there is none: the span is dropped at the end of the first
    signal, and ends when Python collects it, before the message is sent. The broker calls of
    the publish then sit beside it instead of under it. A stand-in per name keeps it until the
    second signal, as for a task the process defines.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._by_name: dict[str, _TaskName] = {}

    def _with_task(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        sender = kwargs.get("sender")
        if isinstance(sender, str) and current_app.tasks.get(sender) is None:
            stand_in = self._by_name.setdefault(sender, _TaskName(sender))
            return {**kwargs, "sender": stand_in}
        return kwargs

    def _trace_before_publish(self, *args: Any, **kwargs: Any) -> None:
        super()._trace_before_publish(*args, **self._with_task(kwargs))  # type: ignore[no-untyped-call]

    def _trace_after_publish(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super()._trace_after_publish(*args, **self._with_task(kwargs))  # type: ignore[no-untyped-call]


def _only_when_recording(cls: type, name: str) -> None:
    """Let the instrumented method `cls.name` run only inside a span that is recorded."""
    traced = getattr(cls, name)  # the instrumentation's wrapper; the original is its __wrapped__
    plain = traced.__wrapped__

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if trace.get_current_span().is_recording():
            return traced.__get__(self, cls)(*args, **kwargs)
        return plain(self, *args, **kwargs)

    setattr(cls, name, method)


def _only_listened_when_recording(engine: Engine, event: str, listener: Any) -> None:
    """Let an instrumentation's event listener on `engine` run only inside a recorded span."""

    def gated(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> Any:
        if trace.get_current_span().is_recording():
            return listener(conn, cursor, statement, params, *args)
        return statement, params

    sqlalchemy.event.remove(engine, event, listener)
    sqlalchemy.event.listen(engine, event, gated, retval=True)


def _trace_redis(provider: TracerProvider) -> None:
    """redis-py's calls, as spans under the span they are made in.

    The instrumentation formats each command and asks the sampler before it can know that a
    call inside a request or task that is not sampled makes no span: there, and outside any
    span, redis-py is called directly. A pipeline is traced as before.
    """
    RedisInstrumentor().instrument(tracer_provider=provider)
    _only_when_recording(redis.Redis, "execute_command")
    _only_when_recording(redis.asyncio.Redis, "execute_command")


def _tag_task(task: Any, **_: Any) -> None:
    # Connected after the instrumentation's own task_prerun handler: its run span is current.
    request_id = getattr(task.request, REQUEST_ID, None)
    if request_id:
        tag_request(request_id)


class Tracing:
    """This process's tracer provider, exporting over OTLP/HTTP, and the libraries it traces."""

    def __init__(self, process: str, *, redis: bool) -> None:
        # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); endpoint, headers and timeout of the
        # exporter from OTEL_EXPORTER_OTLP_*; batch sizes and delay from OTEL_BSP_*.
        self.provider = TracerProvider(resource=_resource(process), shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(self.provider)
        _CeleryInstrumentor().instrument(tracer_provider=self.provider)
        signals.task_prerun.connect(_tag_task, weak=False)
        if redis:
            _trace_redis(self.provider)

    def instrument_engine(self, engine: Engine) -> None:
        """Trace this engine's statements (of an AsyncEngine: pass its `sync_engine`)."""
        # The instrumentation declares SQLAlchemy < 2.1, a bound set when 2.0 was the latest
        # (opentelemetry-python-contrib PR 2971), and otherwise refuses to work. The engine
        # events it listens to are unchanged in 2.1: tests/test_tracing.py sees the statements.
        traced = SQLAlchemyInstrumentor().instrument(
            engine=engine, tracer_provider=self.provider, skip_dep_check=True
        )
        if traced is None:  # one engine a process: a second call instruments nothing
            return
        # Before each statement it reads the URL, names the operation and asks the sampler,
        # even where no span is recorded: there it now steps aside (its after-statement
        # listener finds no span and does nothing). Its span around each Engine.connect, a
        # checkout from the pool, goes the same way as redis-py's calls.
        _only_listened_when_recording(engine, "before_cursor_execute", traced._before_cur_exec)
        _only_when_recording(Engine, "connect")
        # Its pool listeners count connections for OpenTelemetry metrics, which this service
        # does not export (Prometheus has its own, core/metrics.py): four calls a request, gone.
        for event, listener in (
            ("connect", traced._pool_connect),
            ("close", traced._pool_close),
            ("checkin", traced._pool_checkin),
            ("checkout", traced._pool_checkout),
        ):
            sqlalchemy.event.remove(engine, event, listener)

    def shutdown(self) -> None:
        """Export the pending spans, waiting for FLUSH_AT_EXIT_SECONDS at most."""
        flush = threading.Thread(target=self.provider.shutdown, name="otel-flush", daemon=True)
        flush.start()
        flush.join(FLUSH_AT_EXIT_SECONDS)
        if flush.is_alive():
            log.warning("spans not exported at exit", waited_seconds=FLUSH_AT_EXIT_SECONDS)
