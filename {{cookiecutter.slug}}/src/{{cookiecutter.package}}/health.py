"""Health checks: liveness says the process serves; readiness says it can do useful work.

`/livez` touches nothing, so a database outage never gets healthy pods restarted.
`/readyz` asks PostgreSQL and Redis, each bounded by READINESS_TIMEOUT_SECONDS, and answers 503
from the moment the process is told to stop (see web.py), so traffic drains before it exits.
"""

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .deps import AppSettings, DbEngine, RedisClient

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


async def _state(check: Awaitable[object], seconds: float) -> str:
    try:
        await asyncio.wait_for(check, seconds)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any failure means not ready; the class name says which
        return f"error: {type(exc).__name__}"
    return "ok"


async def _ping_postgres(engine: DbEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


@router.get("/readyz")
async def readyz(
    request: Request, engine: DbEngine, redis: RedisClient, settings: AppSettings
) -> JSONResponse:
    timeout = settings.readiness_timeout_seconds
    postgres, redis_state = await asyncio.gather(
        _state(_ping_postgres(engine), timeout), _state(redis.ping(), timeout)
    )
    checks = {"postgres": postgres, "redis": redis_state}
    draining = request.app.state.draining
    ready = not draining and all(state == "ok" for state in checks.values())
    status = "ready" if ready else ("draining" if draining else "unavailable")
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)
