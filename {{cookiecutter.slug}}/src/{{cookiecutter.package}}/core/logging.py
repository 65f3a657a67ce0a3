"""Factor XI, logs: every line any process writes is one JSON object on stdout.

Our own events go the short way: structlog renders them straight to stdout (no stdlib
`LogRecord`, a third of the cost per line). Everything else (uvicorn's, Celery's, SQLAlchemy's
lines, warnings) comes through the standard library, whose one root handler renders it with the
same processors, so both look alike. The access line, one per request, is built directly.
"""

import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, BinaryIO

import orjson
import structlog
from structlog.types import EventDict, Processor


def utc_timestamp() -> str:
    """The one `timestamp` format of every line: ISO 8601 in UTC, always with microseconds, `Z`.

    `datetime.isoformat()` drops the fraction when it is zero and writes `+00:00`; one format
    lets a log pipeline parse every line of every process type with one pattern.
    """
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _add_timestamp(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates each message with ANSI colours under this key.
    event_dict.pop("color_message", None)
    return event_dict


def _dumps_bytes(obj: Any, **_: Any) -> bytes:
    return orjson.dumps(obj, default=str)  # a value orjson cannot encode is logged as str()


def _dumps_text(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class _NamedBytesLogger(structlog.BytesLogger):
    """structlog's fastest logger, with the name `add_logger_name` reads, and a re-entrant
    write lock.

    A signal handler runs between two bytecodes of whatever the main thread was doing, and
    Celery's SIGTERM handler logs (`worker shutting down`). With structlog's own lock, a signal
    that lands while a line is being written waits for a lock its own thread holds: the worker
    hung until SIGKILL. Re-entered, the handler's line is written first, whole.
    """

    _reentrant = threading.RLock()  # one per process, like structlog's per-file lock

    def __init__(self, stream: BinaryIO, name: str) -> None:
        super().__init__(stream)
        self.name = name
        self._lock = self._reentrant  # type: ignore[assignment]


def configure_logging(level: str, trace_ids: bool = False) -> None:
    """Send structlog events and standard-library records to stdout as JSON lines; with
    `trace_ids`, each line written inside a span carries its `trace_id` and `span_id`."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,  # request_id, task_id ...
    ]
    if trace_ids:
        from .tracing import add_trace_ids  # imports OpenTelemetry: only when tracing is on

        shared.append(add_trace_ids)
    shared += [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_timestamp,
        _drop_color_message,
        # No local variables in tracebacks: they could hold a secret.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
    ]
    stdout = sys.stdout.buffer  # kept: Celery later swaps sys.stdout for a logging proxy
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer(serializer=_dumps_bytes)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda name="root", *_: _NamedBytesLogger(stdout, name),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_dumps_text),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that install their own handlers or stop propagation are brought back to root.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "alembic"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    structlog.get_logger("uncaught").critical("uncaught exception", exc_info=(kind, value, tb))


# Where a request's state holds the ids of its span, when tracing made one (web/server_span.py):
# the access line takes them from there. Probes have none, and their line costs no lookup.
TRACE_IDS = "trace_ids"


class AccessLog:
    """Writes the one line each HTTP request leaves, in the shape of every other line.

    The fields are known in advance, so the line is one dict and one orjson call: through
    structlog's processors it cost ~10 µs, a quarter of a whole `/livez` (measured by the
    template's bench/).
    """

    LOGGER = f"{__package__}.access"
    OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE

    def __init__(self, level: str, stream: BinaryIO) -> None:
        self.enabled = logging.getLevelName(level) <= logging.INFO
        self.stream = stream

    def write(
        self,
        request_id: str,
        method: str,
        path: str,
        status: int,
        seconds: float,
        flags: dict[str, str] | None = None,
        trace_ids: dict[str, str] | None = None,
    ) -> None:
        """`trace_ids`: the `trace_id` and `span_id` of the request's span, when it has one."""
        if not self.enabled:
            return
        line = {
            "timestamp": utc_timestamp(),
            "level": "info",
            "logger": self.LOGGER,
            "event": "request",
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        if trace_ids:
            line.update(trace_ids)
        if flags:  # the feature flags the request evaluated, and their variants (core/flags.py)
            line["flags"] = flags
        self.stream.write(orjson.dumps(line, option=self.OPTIONS))
        self.stream.flush()
