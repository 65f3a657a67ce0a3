"""The dependencies routes ask for, as `Annotated` aliases.

Everything here was made once by the lifespan in app.py and lives in the ASGI lifespan state;
a route names what it needs in its signature instead of reaching for a global.

Each getter is `async def` although it awaits nothing: FastAPI runs a plain `def` dependency in
a thread pool, and that hop cost more than the rest of a session read together.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Cookie, Depends, HTTPException, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..core.sessions import COOKIE, SessionStore
from ..core.settings import Settings


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessionmaker() as session:
        yield session


async def _engine(request: Request) -> AsyncEngine:
    return request.state.engine  # type: ignore[no-any-return]


async def _redis(request: Request) -> Redis:
    return request.state.redis  # type: ignore[no-any-return]


async def _celery(request: Request) -> Celery:
    return request.state.celery


async def _settings(request: Request) -> Settings:
    return request.state.settings  # type: ignore[no-any-return]


async def _session_store(request: Request) -> SessionStore:
    return request.state.session_store  # type: ignore[no-any-return]


async def _request_id(request: Request) -> str:
    return request.state.request_id  # type: ignore[no-any-return]


DbSession = Annotated[AsyncSession, Depends(_db_session)]
DbEngine = Annotated[AsyncEngine, Depends(_engine)]
RedisClient = Annotated[Redis, Depends(_redis)]
CeleryApp = Annotated[Celery, Depends(_celery)]
AppSettings = Annotated[Settings, Depends(_settings)]
Sessions = Annotated[SessionStore, Depends(_session_store)]
RequestId = Annotated[str, Depends(_request_id)]
SessionCookie = Annotated[str | None, Cookie(alias=COOKIE, include_in_schema=False)]


async def _current_session(request: Request) -> dict[str, Any]:
    # Reads the store and the cookie itself rather than through two sub-dependencies: each one
    # is a resolution step for FastAPI on every authenticated request (14% of a session read).
    store: SessionStore = request.state.session_store
    data = await store.load(request.cookies.get(COOKIE))
    if data is None:
        raise HTTPException(401, "no session", headers={"WWW-Authenticate": "Cookie"})
    return data


CurrentSession = Annotated[dict[str, Any], Depends(_current_session)]
