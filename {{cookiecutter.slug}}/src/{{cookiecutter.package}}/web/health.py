"""Health checks: liveness says the process serves; readiness says it can do useful work.

`/livez` touches nothing, so a database outage never gets healthy pods restarted. Every replica
answers it every few seconds, and a constant needs none of what a FastAPI route does per request
(dependencies, validation, serialisation: a third of what a bare FastAPI hello costs, measured
by the template's bench/), so it is a plain Starlette route, outside the API schema.
`/readyz` asks PostgreSQL and Redis, each bounded by READINESS_TIMEOUT_SECONDS, and answers 503
from the moment the process is told to stop (see server.py), so traffic drains before it exits.
"""

import asyncio
from collections.abc import Coroutine

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.routing import Match, Route
from starlette.types import Scope

from .deps import AppSettings, DbEngine, RedisClient

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
        return f"error: {type(exc).__name__}"
    return "ok"


async def _ping_postgres(engine: DbEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _ping_redis(redis: RedisClient) -> None:
    await redis.ping()


@router.get("/readyz")
async def readyz(
    request: Request, engine: DbEngine, redis: RedisClient, settings: AppSettings
) -> JSONResponse:
    timeout = settings.readiness_timeout_seconds
    postgres, redis_state = await asyncio.gather(
        _state(_ping_postgres(engine), timeout), _state(_ping_redis(redis), timeout)
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
