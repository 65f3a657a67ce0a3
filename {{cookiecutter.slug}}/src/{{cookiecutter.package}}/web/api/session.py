"""Log in and out: a server-side session in Redis, referenced by a signed cookie."""

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CurrentSession, SessionCookie, Sessions
from ..ratelimit import rate_limited

router = APIRouter(prefix="/session", tags=["session"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class SessionOut(BaseModel):
    username: str
    started_at: datetime


@router.post("", status_code=201, dependencies=[rate_limited])
async def log_in(
    login: Login, response: Response, store: Sessions, cookie: SessionCookie = None
) -> SessionOut:
    session = SessionOut(username=login.username, started_at=datetime.now(UTC))
    await store.start(session.model_dump(mode="json"), response, old_cookie=cookie)
    return session


@router.get("")
async def current(session: CurrentSession) -> SessionOut:
    return SessionOut.model_validate(session)


@router.delete("", status_code=204, dependencies=[rate_limited])
async def log_out(response: Response, store: Sessions, cookie: SessionCookie = None) -> None:
    await store.end(cookie, response)
