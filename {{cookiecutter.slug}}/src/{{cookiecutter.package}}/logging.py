"""Factor XI, logs: every line any process writes is one JSON object on stdout.

One handler on the root logger renders both structlog events and plain stdlib records (uvicorn's,
Celery's, SQLAlchemy's, warnings) the same way, so a platform can ship stdout as it is.
"""

import logging
import sys
from types import TracebackType
from typing import Any

import orjson
import structlog
from structlog.types import EventDict, Processor


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates each message with ANSI colours under this key.
    event_dict.pop("color_message", None)
    return event_dict


def _render(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str) -> None:
    """Route structlog and the standard library through one JSON renderer on stdout."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,  # request_id, task_id ...
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # No local variables in tracebacks: they could hold a secret.
                structlog.processors.ExceptionRenderer(
                    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                ),
                structlog.processors.JSONRenderer(serializer=_render),
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
