"""Notes: each belongs to the user who wrote it, stored in PostgreSQL, enriched in the
background by the worker. Another user's note is a 404, as if it did not exist: a 403 would
confirm that the id is taken.

The summary is behind the `note-summary` flag, evaluated here and in the worker for the same
user: switching it off hides summaries at once, without waiting for the worker."""

from datetime import datetime
from typing import Annotated, Protocol

import structlog
from celery import Celery
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool

from ...core.flags import NOTE_SUMMARY
from ...core.models import Note
from ..deps import CeleryApp, CurrentSession, DbEngine, DbSession, FeatureFlags, RequestId
from ..ratelimit import rate_limited
from .fields import RowId, StorableText

router = APIRouter(prefix="/notes", tags=["notes"])
log = structlog.get_logger(__name__)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: StorableText = Field(min_length=1, max_length=200)  # the column is String(200)
    body: StorableText = Field(max_length=10_000)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    created_at: datetime
    word_count: int | None
    summary: str | None = Field(description="null unless the `note-summary` flag is on for you")
    enriched: bool


class NotePage(BaseModel):
    items: list[NoteOut]
    next_before: int | None = Field(description="pass as `before` for the next page")


class _NoteColumns(Protocol):
    """A Note, or a row of its columns."""

    id: int
    title: str
    body: str
    created_at: datetime
    word_count: int | None
    summary: str | None
    enriched_at: datetime | None


def _out(note: _NoteColumns, summary_shown: bool) -> NoteOut:
    return NoteOut(
        id=note.id,
        title=note.title,
        body=note.body,
        created_at=note.created_at,
        word_count=note.word_count,
        summary=note.summary if summary_shown else None,
        enriched=note.enriched_at is not None,
    )


def enqueue_enrichment(celery: Celery, note_id: int, request_id: str | None) -> None:
    # The request id travels in the message headers and is bound to the worker's log lines.
    celery.send_task("notes.enrich", args=[note_id], headers={"request_id": request_id})


@router.post("", status_code=201, dependencies=[rate_limited])
async def create_note(
    note: NoteIn,
    session: CurrentSession,
    db: DbSession,
    celery: CeleryApp,
    request_id: RequestId,
    flags: FeatureFlags,
) -> NoteOut:
    row = Note(owner_id=session.user_id, title=note.title, body=note.body)
    db.add(row)
    await db.flush()
    await db.refresh(row)  # its server-made columns, in the same transaction
    await db.commit()  # the connection goes back to the pool before the broker call below
    try:
        await run_in_threadpool(enqueue_enrichment, celery, row.id, request_id)
    except Exception as exc:  # the note is stored; the clock's sweep enqueues it later
        log.warning("enqueue failed", note_id=row.id, error=type(exc).__name__)
    return _out(row, flags.enabled(NOTE_SUMMARY, session.user_id))


# The hottest read needs no unit of work: one pooled connection and one Core SELECT cost a
# quarter less than AsyncSession.get (measured by the template's bench/). Built once, the
# statement is found in SQLAlchemy's compiled cache without being rebuilt and re-hashed.
NOTE_BY_ID = select(*Note.__table__.c).where(
    Note.id == bindparam("note_id"), Note.owner_id == bindparam("owner_id")
)


@router.get("/{note_id}")
async def get_note(
    note_id: RowId, session: CurrentSession, engine: DbEngine, flags: FeatureFlags
) -> NoteOut:
    async with engine.connect() as conn:
        params = {"note_id": note_id, "owner_id": session.user_id}
        note = (await conn.execute(NOTE_BY_ID, params)).first()
    if note is None:
        raise HTTPException(404, "note not found")
    return _out(note, flags.enabled(NOTE_SUMMARY, session.user_id))


@router.get("")
async def list_notes(
    session: CurrentSession,
    db: DbSession,
    flags: FeatureFlags,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[RowId | None, Query(description="id to page back from")] = None,
) -> NotePage:
    query = select(Note).where(Note.owner_id == session.user_id)
    query = query.order_by(Note.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Note.id < before)
    notes = (await db.scalars(query)).all()
    next_before = notes[-1].id if len(notes) == limit else None
    shown = flags.enabled(NOTE_SUMMARY, session.user_id)
    return NotePage(items=[_out(n, shown) for n in notes], next_before=next_before)
