"""Start the generated web without some of its per-request layers, for bench/layers.py.

    python bench/without.py PACKAGE [LAYER ...]    (in the project's venv and directory)

Takes each named layer out before the app is built, then runs `python -m PACKAGE web` as the
Procfile does (with no LAYER, the whole web). Only for measuring what a layer costs: a web started
this way is missing a feature the service promises. LAYERS lists the names.
"""

import runpy
import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

# Middleware classes: add_middleware skips them.
MIDDLEWARE = {
    "security-headers": ["SecurityHeadersMiddleware"],
    "cross-origin-and-body-limit": ["CrossOriginProtection", "BodyLimitMiddleware"],
    "deadline": ["DeadlineMiddleware"],
    "observe": ["ObserveMiddleware"],
}


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _no_access_line(package: str) -> None:
    import_module(f"{package}.core.logging").AccessLog.write = _nothing


def _no_http_metrics(package: str) -> None:
    import_module(f"{package}.core.metrics").HttpMetrics.observe = _nothing
    gauge = import_module("prometheus_client").Gauge  # only the in-progress gauge, per request
    gauge.inc = gauge.dec = _nothing


def _no_log_context(package: str) -> None:
    contextvars: Any = import_module("structlog.contextvars")
    contextvars.clear_contextvars = contextvars.bind_contextvars = _nothing


def _no_redis_timeout(package: str) -> None:
    redis_client: Any = import_module(f"{package}.core.redis_client")
    options = redis_client.redis_options

    def without_timeout(*args: Any, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        url, found = options(*args, **kwargs)
        return url, {**found, "socket_timeout": None}  # the connect timeout stays

    redis_client.redis_options = without_timeout


# Parts of a layer, taken out while the layer stays.
PARTS: dict[str, Callable[[str], None]] = {
    "access-line": _no_access_line,
    "http-metrics": _no_http_metrics,
    "log-context": _no_log_context,
    "redis-socket-timeout": _no_redis_timeout,
}
LAYERS = [*MIDDLEWARE, *PARTS]


def main() -> None:
    package, *layers = sys.argv[1:]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        sys.exit(f"unknown layers {sorted(unknown)}; known: {', '.join(LAYERS)}")
    # As the entry point does first, before anything here imports redis (core/telemetry.py).
    import_module(f"{package}.core.telemetry").keep_unused_sdk_out()
    skipped = {name for layer in layers for name in MIDDLEWARE.get(layer, [])}
    starlette = import_module("starlette.applications").Starlette
    add_middleware = starlette.add_middleware

    def add_unless_skipped(app: Any, middleware: type, *args: Any, **kwargs: Any) -> None:
        if middleware.__name__ not in skipped:
            add_middleware(app, middleware, *args, **kwargs)

    starlette.add_middleware = add_unless_skipped
    for layer in layers:
        if layer in PARTS:
            PARTS[layer](package)
    sys.argv = [package, "web"]
    runpy.run_module(package, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
