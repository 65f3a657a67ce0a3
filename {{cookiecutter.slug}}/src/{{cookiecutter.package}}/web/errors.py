"""A backing service that is down or too slow is a 503 with a JSON body, never a 500.

The request fails fast (every client has a timeout from config) and the client is told to retry;
nothing is retried here, so an outage does not pile up waiting requests.
"""

from collections.abc import Sequence
from functools import partial

import orjson
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Send

log = structlog.get_logger(__name__)

UNAVAILABLE: dict[type[Exception], str] = {
    sqlalchemy.exc.OperationalError: "postgres",
    sqlalchemy.exc.InterfaceError: "postgres",
    sqlalchemy.exc.TimeoutError: "postgres",  # no pooled connection within the timeout
    redis.exceptions.ConnectionError: "redis",
    redis.exceptions.TimeoutError: "redis",
}


async def _unavailable(dependency: str, request: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency unavailable", dependency=dependency, error=type(exc).__name__)
    return JSONResponse(
        {"detail": f"{dependency} unavailable, try again later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def send_json_error(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer with `{"detail": ...}` straight from a pure-ASGI middleware."""
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, dependency in UNAVAILABLE.items():
        app.add_exception_handler(exc_type, partial(_unavailable, dependency))
