"""Bare FastAPI baselines: the same work as the generated service, with nothing around it.

run.py starts this with the rendered project's venv python, so it uses the very same FastAPI,
uvicorn, redis and SQLAlchemy + psycopg versions. Each endpoint does the minimum its twin in the
generated service must do:

  /livez          return a constant                   (twin: GET /livez)
  /plain          the same as a plain Starlette route (twin: GET /livez, which is one too)
  /session        one redis.asyncio GET of a key      (twin: GET /api/v1/session, one script call)
  /notes/{id}     the session's GET, then one SELECT  (twin: GET /api/v1/notes/{id}: the owner's
                  session, then their note)
  /readyz         SELECT 1 and PING, for start-up timing only

What is deliberately the same as the generated service: uvicorn settings, the pool size (10, no
overflow) and psycopg's prepare_threshold=None, so the ratio measures the template's per-request
code (middleware, logging, dependency injection, response models), not driver tuning.
What is deliberately absent: middleware, logging, the ORM and response models.

Usage: python baseline.py   (reads PORT, DATABASE_URL, REDIS_URL and BENCH_SESSION_KEY)
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

# The generated service normalises postgresql:// to this dialect+driver too.
DATABASE_URL = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
REDIS_URL = os.environ["REDIS_URL"]
SESSION_KEY = os.environ.get("BENCH_SESSION_KEY", "bench:session")

NOTE_BY_ID = text(
    "SELECT id, title, body, created_at, word_count, enriched_at FROM notes WHERE id = :id"
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = create_async_engine(
        DATABASE_URL,
        pool_size=10,
        max_overflow=0,
        connect_args={"prepare_threshold": None},
    )
    app.state.redis = Redis.from_url(REDIS_URL)
    yield
    await app.state.engine.dispose()
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


async def plain(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app.add_route("/plain", plain, methods=["GET"], include_in_schema=False)


@app.get("/readyz")
async def readyz(request: Request) -> dict[str, str]:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await request.app.state.redis.ping()
    return {"status": "ready"}


@app.get("/session")
async def session(request: Request) -> Any:
    raw = await request.app.state.redis.get(SESSION_KEY)
    if raw is None:
        raise HTTPException(401, "no session")
    return orjson.loads(raw)


@app.get("/notes/{note_id}")
async def note(note_id: int, request: Request) -> dict[str, Any]:
    if await request.app.state.redis.get(SESSION_KEY) is None:
        raise HTTPException(401, "no session")
    async with request.app.state.engine.connect() as conn:
        row = (await conn.execute(NOTE_BY_ID, {"id": note_id})).mappings().first()
    if row is None:
        raise HTTPException(404, "note not found")
    return dict(row)


if __name__ == "__main__":
    # The same uvicorn settings as the generated web process (its web/server.py).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )
