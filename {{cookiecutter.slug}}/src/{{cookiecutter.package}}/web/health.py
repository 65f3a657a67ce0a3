"""Health checks: liveness says the process serves; readiness says it can do useful work.

`/livez` touches nothing, so a database outage never gets healthy pods restarted. Every replica
answers it every few seconds, and a constant needs none of what a FastAPI route does per request
(dependencies, validation, serialisation: a third of what a bare FastAPI hello costs, measured
by the template's bench/), so it is a plain Starlette route, outside the API schema.
`/readyz` asks PostgreSQL and Redis, each bounded by READINESS_TIMEOUT_SECONDS, and answers 503
from the moment the process is told to stop (see server.py), so traffic drains before it exits.

Each dependency is asked twice: over a pooled connection (what requests use), then over a new one,
which logs in with the credentials of now. Credentials from files (DATABASE_URL_FILE,
REDIS_URL_FILE) can change while the pool's connections, logged in long ago, still work: the new
login is what shows a password that no longer works, or a file gone or garbled, before the pool
next needs a connection. Its state then says why ("authentication failed", "REDIS_URL_FILE: file
not found"), never the secret. A login every probe period is the whole cost: none per request.
"""

import asyncio
from collections.abc import Coroutine

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from redis.exceptions import AuthenticationError
from sqlalchemy import text
from starlette.routing import Match, Route
from starlette.types import Scope

from ..core.secret_files import SecretFileError
from .deps import AppSettings, DbEngine, LoginCheckEngine, RedisClient

router = APIRouter(tags=["health"])


class PlainRoute(Route):
    """A Starlette route that names itself in the scope as FastAPI's routes do, for metrics."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


async def livez(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def livez_route() -> Route:
    # Added to the app's own routes: FastAPI rebuilds an included router's plain routes as stock
    # Starlette ones, which would lose the subclass.
    return PlainRoute("/livez", livez, methods=["GET"], include_in_schema=False)


async def _state(check: Coroutine[object, object, object], seconds: float) -> str:
    task = asyncio.create_task(check)
    # Not asyncio.wait_for: it waits for the cancelled check to finish, and cancelling a query
    # on a connection whose peer went silent can hang (psycopg sends a cancel request over the
    # same network). The check is cancelled and left to end on its own; the answer goes now.
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        return "timeout"
    if (exc := task.exception()) is not None:  # any failure means not ready; its class says which
        return f"error: {_why(exc)}"
    return "ok"


# PostgreSQL's invalid_password and invalid_authorization_specification.
_AUTH_SQLSTATES = {"28P01", "28000"}


def _why(exc: BaseException) -> str:
    """What went wrong, in words safe to show: never a message that could quote a secret."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    if isinstance(cause, SecretFileError):
        return f"{cause.variable}: {cause.reason}"
    # libpq refuses a login before any session exists, so psycopg has no SQLSTATE for it: its
    # message, which names the user but never the password, is what says so.
    refused = getattr(cause, "sqlstate", None) in _AUTH_SQLSTATES or (
        "password authentication failed" in str(cause)
    )
    if refused or isinstance(cause, AuthenticationError):
        return "authentication failed"
    return type(exc).__name__


async def _ping_postgres(engine: DbEngine, login_check: LoginCheckEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    async with login_check.connect():  # a new connection (no pool): a new login
        pass


async def _ping_redis(redis: RedisClient) -> None:
    await redis.ping()
    pool = redis.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)  # not the pool's: a new login
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
    finally:
        await connection.disconnect()


@router.get("/readyz")
async def readyz(
    request: Request,
    engine: DbEngine,
    login_check: LoginCheckEngine,
    redis: RedisClient,
    settings: AppSettings,
) -> JSONResponse:
    timeout = settings.readiness_timeout_seconds
    postgres, redis_state = await asyncio.gather(
        _state(_ping_postgres(engine, login_check), timeout), _state(_ping_redis(redis), timeout)
    )
    checks = {"postgres": postgres, "redis": redis_state}
    draining = request.app.state.draining
    ready = not draining and all(state == "ok" for state in checks.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    status = "draining" if draining else "unavailable"
    failing = ", ".join(name for name, state in checks.items() if state != "ok")
    body = {
        "status": status,
        "checks": checks,
        # The error shape's two fields as well (errors.py), like every other 4xx and 5xx.
        "detail": "shutting down" if draining else f"not ready: {failing} unavailable",
        "request_id": request.state.request_id,
    }
    return JSONResponse(body, status_code=503)
