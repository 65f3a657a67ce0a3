"""Request bodies larger than MAX_REQUEST_BODY_BYTES are refused with 413 before they are read.

A body that announces its size (Content-Length) too large is answered at once, unread. One that
does not (chunked) is counted as it arrives: at the first chunk past the limit, reading stops
and the answer is 413, so at most the limit plus one chunk is ever held. Whatever the client
still sends of that body, uvicorn reads and drops without keeping it.
"""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import send_json_error


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI, which reads the body, hands it to the error handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                # uvicorn has already refused a Content-Length that is not a number.
                if int(value) > self.max_bytes:
                    await send_json_error(send, scope, 413, BodyTooLarge(self.max_bytes).detail)
                    return
                announced = True
            elif name == b"transfer-encoding":
                announced = True
        if not announced:  # neither header: the request has no body (RFC 9112, 6.3) to count
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_counted, send_watched)
        except BodyTooLarge as exc:  # read by something other than a FastAPI route
            if started:
                raise
            await send_json_error(send, scope, 413, exc.detail)
