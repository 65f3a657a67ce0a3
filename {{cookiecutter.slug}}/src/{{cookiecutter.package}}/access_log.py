"""One access line per request (method, path, status, duration), crashed requests included.

uvicorn's own access log is off (see web.py): this line carries the request id and is JSON.
A request that raises is answered here with a JSON 500, so it is logged and carries its id too.
"""

import time

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        except Exception:
            log.exception("unhandled error")
            if status == 0:  # nothing sent yet: the client still gets an answer
                status = 500
                await _send_json_500(send)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 2),
            )


async def _send_json_500(send: Send) -> None:
    body = orjson.dumps({"detail": "internal server error"})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
