"""Every request has a deadline, so a backing service that accepts and never answers costs the
client REQUEST_TIMEOUT_SECONDS and a 503, not a hung connection and a piled-up server.

Client timeouts on each connection cover refused and slow connects; this covers the rest (a
pooled connection whose peer went silent mid-query has no timeout of its own on the client).

At the deadline the 503 goes out first, from a task of its own, and only then is the request
cancelled: a cancelled query cleans up on the very connection that went silent (psycopg asks the
server to cancel, SQLAlchemy rolls back), and that clean-up can hang as well. `asyncio.timeout()`
around the request would make the client wait for it.
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
        self.answering: set[asyncio.Task[None]] = set()  # asyncio holds tasks only weakly

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = asyncio.current_task()
        assert request is not None
        started = expired = False

        async def send_in_time(message: Message) -> None:
            nonlocal started
            if expired:
                return  # the client has had its 503: whatever comes late is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        def expire() -> None:
            nonlocal expired
            expired = True
            log.warning("request deadline exceeded", seconds=self.seconds)
            if not started:
                answer = asyncio.ensure_future(
                    send_json_error(
                        send,
                        scope,
                        503,
                        "request timed out, try again later",
                        [(b"retry-after", b"1")],
                    )
                )
                self.answering.add(answer)
                answer.add_done_callback(self.answering.discard)
            request.cancel()

        timer = asyncio.get_running_loop().call_later(self.seconds, expire)
        try:
            await self.app(scope, receive, send_in_time)
        except asyncio.CancelledError:
            if not expired or request.uncancel() > 0:
                raise  # not (only) the deadline: the server is shutting down
            if started:
                raise TimeoutError from None  # half a response is out: the connection is dropped
        finally:
            timer.cancel()
