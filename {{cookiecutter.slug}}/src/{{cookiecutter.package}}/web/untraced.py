"""The platform's own requests make no spans: liveness and readiness probes and metric scrapes.

They arrive every few seconds on every replica, each readiness probe with a SQL statement and a
Redis call of its own; traced, they would bury the requests users make and cost a span's CPU
each time. They are still logged and counted like any request.

Two switches, because two things trace a request: FastAPI makes the server span unless its
`exclude` says no (`is_untraced`, in app.py), and the instrumentations of SQLAlchemy and redis-py
make their spans unless OpenTelemetry's instrumentation is suppressed for the request
(`UntracedMiddleware`, added only with tracing on; `suppress` comes from core/tracing.py, so this
module imports nothing of OpenTelemetry).
"""

from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


def is_untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


class UntracedMiddleware:
    def __init__(self, app: ASGIApp, suppress: Callable[[], AbstractContextManager[None]]) -> None:
        self.app = app
        self.suppress = suppress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_untraced(scope):
            with self.suppress():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)
