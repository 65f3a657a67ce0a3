"""A user's sessions: see where the account is logged in, and end any of them."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Path
from pydantic import BaseModel, Field

from ..deps import CurrentSession, Sessions
from ..ratelimit import rate_limited
from .routers import api_router

router = api_router("/sessions", tag="session")


class SessionInfo(BaseModel):
    id: str = Field(description="a handle for this API; never the cookie's id")
    current: bool = Field(description="the session making this request")
    created_at: datetime
    last_used_at: datetime = Field(description="to the minute")
    expires_at: datetime
    user_agent: str


class SessionList(BaseModel):
    items: list[SessionInfo]


def _time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@router.get("")
async def list_sessions(session: CurrentSession, store: Sessions) -> SessionList:
    return SessionList(
        items=[
            SessionInfo(
                id=each.handle,
                current=each.handle == session.handle,
                created_at=_time(each.created_at),
                last_used_at=_time(each.last_used_at),
                expires_at=_time(each.expires_at),
                user_agent=each.user_agent,
            )
            for each in await store.of_user(session.user_id)
        ]
    )


@router.delete("/{session_id}", status_code=204, dependencies=[rate_limited])
async def end_session(
    session_id: Annotated[str, Path(max_length=64)], session: CurrentSession, store: Sessions
) -> None:
    if not await store.end(session.user_id, session_id):
        raise HTTPException(404, "no such session")
