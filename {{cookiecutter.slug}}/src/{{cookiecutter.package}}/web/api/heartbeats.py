"""The clock's heartbeat runs, as the worker stored them: proof that scheduling works."""

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from ...core.models import Heartbeat
from ..deps import DbSession
from .routers import api_router

router = api_router("/heartbeats", tag="heartbeats")


class HeartbeatOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_id: str
    ran_at: datetime


class HeartbeatList(BaseModel):
    items: list[HeartbeatOut]


@router.get("")
async def recent_heartbeats(
    db: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> HeartbeatList:
    rows = await db.scalars(
        select(Heartbeat).order_by(Heartbeat.ran_at.desc(), Heartbeat.id.desc()).limit(limit)
    )
    return HeartbeatList(items=[HeartbeatOut.model_validate(r) for r in rows])
