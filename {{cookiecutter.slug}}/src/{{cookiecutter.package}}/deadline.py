"""Every request has a deadline, so a backing service that accepts and never answers costs the
client REQUEST_TIMEOUT_SECONDS and a 503, not a hung connection and a piled-up server.

Client timeouts on each connection cover refused and slow connects; this covers the rest (a
pooled connection whose peer went silent mid-query has no timeout of its own on the client).
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_tracking_start)
        except TimeoutError:
            log.warning("request deadline exceeded", seconds=self.seconds)
            if started:
                raise  # half a response is out: all that is left is to drop the connection
            await send_json_error(
                send, 503, "request timed out, try again later", [(b"retry-after", b"1")]
            )
