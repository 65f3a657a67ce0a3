"""What every request leaves behind: its id, one access log line, and its metrics.

One pure-ASGI middleware does all three because they need the same things (the status, the
duration, the id) and every layer wrapped around every request costs time (measured by the
template's bench/).
A request that raises is answered here with a JSON 500, so it is logged, counted and carries
its id too. uvicorn's own access log is off (see server.py).
"""

import time
from collections.abc import Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.flags import EVALUATED
from ..core.logging import TRACE_IDS, AccessLog
from ..core.metrics import HttpMetrics, scrape_registry
from .errors import send_json_error
from .request_id import HEADER, request_id

log = structlog.get_logger(__name__)


def route_template(scope: Scope) -> str:
    """`/api/v1/notes/{note_id}` for a request to `/api/v1/notes/42`: label values stay few."""
    route = scope.get("route")  # set by the router that matched; a 404 has none
    if route is None:
        return "unmatched"
    # A route of an included router holds only its own segments (`/notes/{note_id}`); the
    # request path's leading segments are the prefixes it was included under.
    depth = route.path.count("/")
    return str(scope["path"].rsplit("/", depth)[0] + route.path)


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[], Response]:
    """The `GET /metrics` handler: the Prometheus text format of `registry`."""
    scraped = scrape_registry(registry)

    def metrics() -> Response:
        return Response(generate_latest(scraped), media_type=CONTENT_TYPE_LATEST)

    return metrics


class ObserveMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpMetrics,
        access_log: AccessLog,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        # Each request starts from empty log context, so nothing leaks from the previous one.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid  # for the routes, errors and span
        flags: dict[str, str] = {}  # filled by core/flags.py as the request evaluates flags
        EVALUATED.set(flags)
        status = 0
        recorded = False

        def record() -> None:
            # Once, when the last byte is handed to the server, or when the request ends without
            # it: a request whose work is stuck after its answer (deadline.py) is still logged.
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self.metrics.in_progress.dec()
            duration = time.perf_counter() - start
            method = scope["method"]
            trace_ids = state.get(TRACE_IDS)  # put there by server_span.py, if tracing is on
            self.access_log.write(rid, method, scope["path"], status, duration, flags, trace_ids)
            self.metrics.observe(method, route_template(scope), status, duration)

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record()

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            log.exception("unhandled error")
            if status == 0:  # nothing sent yet: the client still gets an answer
                await send_json_error(send_observed, scope, 500, "internal server error")
        finally:
            record()
