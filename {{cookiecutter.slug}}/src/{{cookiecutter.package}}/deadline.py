"""Every request has a deadline, so a backing service that accepts and never answers costs the
client REQUEST_TIMEOUT_SECONDS and a 503, not a hung connection and a piled-up server.

Client timeouts on each connection cover refused and slow connects; this covers the rest (a
pooled connection whose peer went silent mid-query has no timeout of its own on the client).

The request runs in a task of its own, and the answer does not wait for that task to end: a
cancelled query cleans up on the very connection that went silent (psycopg asks the server to
cancel, SQLAlchemy rolls back), and that clean-up can hang too. `asyncio.timeout()` around the
request would wait for it, and the client with it.
"""

import asyncio

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_json_error

log = structlog.get_logger(__name__)


class DeadlineMiddleware:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        # Requests given up on, kept referenced until their clean-up ends (asyncio holds tasks
        # only weakly).
        self.abandoned: set[asyncio.Future[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = expired = False

        async def send_in_time(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the client has had its 503: whatever comes late is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, send_in_time))
        try:
            done, _ = await asyncio.wait((work,), timeout=self.seconds)
        except asyncio.CancelledError:  # the server is shutting down: so does the request
            work.cancel()
            raise
        if done:
            work.result()  # re-raises the request's exception, if any, for observe.py
            return

        expired = True
        work.cancel()
        self.abandoned.add(work)
        work.add_done_callback(self._ended)
        log.warning("request deadline exceeded", seconds=self.seconds)
        if started:
            raise TimeoutError  # half a response is out: all that is left is to drop it
        await send_json_error(
            send, 503, "request timed out, try again later", [(b"retry-after", b"1")]
        )

    def _ended(self, work: asyncio.Future[None]) -> None:
        self.abandoned.discard(work)
        if not work.cancelled() and work.exception() is not None:
            log.warning("abandoned request ended", error=type(work.exception()).__name__)
