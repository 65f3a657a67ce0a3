"""The server span of each request: one SERVER span named by its route template
(`GET /api/v1/notes/{note_id}`), the parent of everything the request does (its SQL statements,
Redis calls and task enqueues). app.py adds this layer only when tracing is on, so this module,
which imports OpenTelemetry, is never imported otherwise.

The order of the work is the point: most requests are not sampled in production, and a request
pays for tracing only what its sampling decision needs.

1. The platform's own requests (UNTRACED_PATHS) go straight through, with no OpenTelemetry call
   at all. Nothing under them makes a span either: every instrumentation here traces only
   inside a span that is recorded (core/tracing.py), and they have none.
2. The incoming W3C trace context is read and the sampler asked, with the span's name only.
3. A span not sampled is made current, its ids left in the request's state for the access
   line, and nothing more: a task the request enqueues then carries its trace id with the
   not-sampled flag, so the worker's parent-based sampler drops the task's spans too.
4. Only a sampled span gets its attributes, its route, its status and the request id, each set
   once.

FastAPI's own telemetry (`FastAPI(telemetry=...)`) made this span before: it builds every
attribute (the Host header parsed, the query redacted, the route set twice) and its per-request
records before the sampler decides, and walks the middleware stack on every call, probes
included. bench/README.md ("Tracing on vs off") has the figures of both.
"""

from collections.abc import Awaitable

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.logging import TRACE_IDS
from ..core.tracing import REQUEST_ID, span_ids

# Probes and scrapes arrive every few seconds on every replica, /readyz with a SQL statement and
# a Redis call of its own: traced, they would bury the requests users make. They are still
# logged and counted like any request (observe.py).
UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

# The methods of RFC 9110 and PATCH; any other is `_OTHER` (OpenTelemetry's HTTP conventions).
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

Headers = list[tuple[bytes, bytes]]


class _ScopeHeaders(Getter[Headers]):
    """Reads the propagator's headers (traceparent, tracestate, baggage) from the ASGI scope's
    own list: names arrive lower-cased, and nothing else of the request is decoded."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = key.encode()
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        if not values:
            return None
        # Several baggage headers are one list (W3C Baggage); its propagator reads the first.
        return [",".join(values)] if key == "baggage" else values

    def keys(self, carrier: Headers) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_HEADERS = _ScopeHeaders()


def route_template(scope: Scope) -> str | None:
    """The template of the route that matched (`/api/v1/notes/{note_id}`), with parameters as
    the path declares them minus converters; None when none did (a 404)."""
    route = scope.get("route")  # set by the router that matched
    return None if route is None else str(route.path_format)


def error_type(exc: BaseException) -> str:
    """The exception's class, fully qualified unless built in (`error.type`'s convention)."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class ServerSpanMiddleware:
    def __init__(self, app: ASGIApp, provider: trace.TracerProvider) -> None:
        self.app = app
        self.tracer = provider.get_tracer(__name__)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: a probe is handed the next layer's awaitable as it is, so this
        # layer adds one plain call to it and no coroutine or frame of its own.
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            return self.app(scope, receive, send)
        return self._traced(scope, receive, send)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        name = method if method in METHODS else "HTTP"
        parent = propagate.extract(scope["headers"], getter=_HEADERS)
        # The sampler sees the name only: the samplers the SDK reads from OTEL_TRACES_SAMPLER
        # decide on the trace id and the parent, never on attributes.
        span = self.tracer.start_span(name, parent, SpanKind.SERVER)
        # For observe.py's access line, inside: the ids come from the span at hand rather than
        # from a lookup in the context by every request's line, probes' included.
        scope.setdefault("state", {})[TRACE_IDS] = span_ids(span.get_span_context())
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            if span.is_recording():
                await self._recorded(span, name, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            context.detach(token)

    async def _recorded(
        self, span: trace.Span, name: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status = 0
        ended = False

        def end(error: str | None = None) -> None:
            # Once: when the last byte is handed to the server, or when the request ends
            # without it. By then the router has matched, so the route is known. All the
            # attributes in one call: each call takes the span's lock and checks what it gets.
            nonlocal ended
            if ended:
                return
            ended = True
            method = scope["method"]
            # Required or conditionally required by OpenTelemetry's HTTP server span
            # conventions. Not the query: the links of mails carry their one-time token there.
            attributes: dict[str, str | int] = {
                "http.request.method": method if method in METHODS else "_OTHER",
                "url.scheme": scope["scheme"],
                "url.path": scope["path"],
            }
            if method not in METHODS:
                attributes["http.request.method_original"] = method
            # Put in the request's state by observe.py, inside this layer: the id of its access
            # line, of its answer and of the tasks it enqueues.
            if request_id := scope.get("state", {}).get("request_id"):
                attributes[REQUEST_ID] = request_id
            if route := route_template(scope):
                span.update_name(f"{name} {route}")
                attributes["http.route"] = route
            if status:
                attributes["http.response.status_code"] = status
            if error is None and status >= 500:
                error = str(status)
            if error is not None:
                attributes["error.type"] = error
                span.set_status(StatusCode.ERROR)
            span.set_attributes(attributes)
            span.end()

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                end()

        try:
            await self.app(scope, receive, send_traced)
        except BaseException as exc:
            end(error_type(exc))
            raise
        finally:
            end(None if status else "incomplete_response")
