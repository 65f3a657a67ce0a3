"""Traces on or off. OpenTelemetry is configured by its own standard variables only (`OTEL_*`, as
the SDK documents them), and without an OTLP endpoint among them tracing is off.

Off costs nothing: this module imports nothing from OpenTelemetry, and no process does until
`start_tracing` finds tracing on. Only then is core/tracing.py, the SDK setup, imported.
"""

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tracing import Tracing

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _variable(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip().lower()


def tracing_enabled() -> bool:
    """An OTLP endpoint is set, and neither the SDK nor its traces exporter is switched off."""
    if _variable("OTEL_SDK_DISABLED") == "true" or _variable("OTEL_TRACES_EXPORTER") == "none":
        return False
    return any(_variable(name) for name in ENDPOINTS)


def keep_unused_sdk_out() -> None:
    """With tracing off, keep redis-py from importing the SDK's metrics.

    redis-py imports them whenever the SDK is installed, for optional metrics of its own that
    this service never turns on: with tracing off that is 35 modules and a megabyte for nothing.
    A `None` in sys.modules makes that import fail, which redis-py expects and handles.
    """
    if not tracing_enabled():
        sys.modules.setdefault("opentelemetry.sdk.metrics", None)  # type: ignore[arg-type]


def config_problems() -> list[str]:
    """What this service cannot do that the OTEL_* variables ask for, one line per variable."""
    if not tracing_enabled():
        return []
    problems = []
    # Only the OTLP/HTTP exporter is installed: anything else would be silently ignored.
    if _variable("OTEL_TRACES_EXPORTER", "otlp") != "otlp":
        problems.append("OTEL_TRACES_EXPORTER: must be otlp or none")
    for name in PROTOCOLS:
        if _variable(name, "http/protobuf") != "http/protobuf":
            problems.append(f"{name}: must be http/protobuf (the exporter installed)")
    return problems


def start_tracing(process: str, *, redis: bool = True) -> "Tracing | None":
    """Set up tracing for this process, after any fork; None when tracing is off."""
    if not tracing_enabled():
        return None
    from .tracing import Tracing  # the one import of the SDK, made only when tracing is on

    return Tracing(process, redis=redis)
