"""Notes: each belongs to the user who wrote it, stored in PostgreSQL, enriched in the
background by the worker. Another user's note is a 404, as if it did not exist: a 403 would
confirm that the id is taken.

The summary is behind the `note-summary` flag, evaluated here and in the worker for the same
user: switching it off hides summaries at once, without waiting for the worker. It is also the
template's example of expand/contract: the column is read only while the flag is on, so this
release serves on a database whose `release` has not added it yet (README, "Releases side by
side"). Turned on too soon, the read fails with UndefinedColumn, which web/errors.py answers 503."""

from datetime import datetime
from typing import Annotated, Protocol

import structlog
from fastapi import HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import undefer
from starlette.concurrency import run_in_threadpool

from ...core.flags import NOTE_SUMMARY, Flags
from ...core.models import Note
from ...core.task_sender import TaskSender
from ..deps import CurrentSession, DbSession, FeatureFlags, RequestId, Tasks
from ..ratelimit import rate_limited
from .fields import RowId, StorableText
from .routers import api_router

router = api_router("/notes", tag="notes")
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
    enriched_at: datetime | None


def _out(note: _NoteColumns, summary: str | None) -> NoteOut:
    return NoteOut(
        id=note.id,
        title=note.title,
        body=note.body,
        created_at=note.created_at,
        word_count=note.word_count,
        summary=summary,
        enriched=note.enriched_at is not None,
    )


# Every column but `summary`, which is read only while its flag is on.
NOTE_COLUMNS = [column for column in Note.__table__.c if column.key != "summary"]


def enqueue_enrichment(tasks: TaskSender, note_id: int, request_id: str | None) -> None:
    # The request id travels in the message headers and is bound to the worker's log lines.
    tasks.send_task("notes.enrich", args=[note_id], headers={"request_id": request_id})


@router.post("", status_code=201, dependencies=[rate_limited])
async def create_note(
    note: NoteIn,
    session: CurrentSession,
    db: DbSession,
    tasks: Tasks,
    request_id: RequestId,
    flags: FeatureFlags,
) -> NoteOut:
    # A Core INSERT names only the columns given: the ORM's would list `summary` as well (NULL),
    # which the previous schema does not have (expand/contract: see the docstring).
    values = {"owner_id": session.user_id, "title": note.title, "body": note.body}
    row = (await db.execute(insert(Note).values(values).returning(*NOTE_COLUMNS))).one()
    await db.commit()  # the connection goes back to the pool before the broker call below
    try:
        await run_in_threadpool(enqueue_enrichment, tasks, row.id, request_id)
    except Exception as exc:  # the note is stored; the clock's sweep enqueues it later
        log.warning("enqueue failed", note_id=row.id, error=type(exc).__name__)
    # No summary before the worker has run. Evaluated all the same: the access line names the
    # variant each notes answer was made under.
    flags.enabled(NOTE_SUMMARY, session.user_id)
    return _out(row, None)


# The hottest read needs no unit of work: one pooled connection and one Core SELECT cost a
# quarter less than AsyncSession.get (measured by the template's bench/). Built once, the
# statement is found in SQLAlchemy's compiled cache without being rebuilt and re-hashed.
# Two of them: `summary` is selected only while its flag is on (expand/contract, see above).
# For the same reason it takes the engine and the flags from the request's state (where the
# aliases in deps.py read them) rather than as two more dependencies: each is a resolution step
# of FastAPI's on every request, together 6% of this read (bench/INSTRUCTIONS.md).
_BY_ID = (Note.id == bindparam("note_id"), Note.owner_id == bindparam("owner_id"))
NOTE_BY_ID = select(*NOTE_COLUMNS).where(*_BY_ID)
NOTE_WITH_SUMMARY_BY_ID = select(*Note.__table__.c).where(*_BY_ID)


@router.get("/{note_id}")
async def get_note(note_id: RowId, session: CurrentSession, request: Request) -> NoteOut:
    engine: AsyncEngine = request.state.engine
    flags: Flags = request.state.flags
    shown = flags.enabled(NOTE_SUMMARY, session.user_id)
    async with engine.connect() as conn:
        params = {"note_id": note_id, "owner_id": session.user_id}
        query = NOTE_WITH_SUMMARY_BY_ID if shown else NOTE_BY_ID
        note = (await conn.execute(query, params)).first()
    if note is None:
        raise HTTPException(404, "note not found")
    return _out(note, note.summary if shown else None)


@router.get("")
async def list_notes(
    session: CurrentSession,
    db: DbSession,
    flags: FeatureFlags,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[RowId | None, Query(description="id to page back from")] = None,
) -> NotePage:
    shown = flags.enabled(NOTE_SUMMARY, session.user_id)
    query = select(Note).where(Note.owner_id == session.user_id)
    query = query.order_by(Note.id.desc()).limit(limit)
    if shown:  # deferred otherwise: see models.py
        query = query.options(undefer(Note.summary))
    if before is not None:
        query = query.where(Note.id < before)
    notes = (await db.scalars(query)).all()
    next_before = notes[-1].id if len(notes) == limit else None
    items = [_out(n, n.summary if shown else None) for n in notes]
    return NotePage(items=items, next_before=next_before)
