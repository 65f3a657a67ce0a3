"""The outbox: a mail to send is a row written in the transaction of the change that calls for
it, so a mail is never promised for a change that rolled back, nor lost for one that committed.

After the commit the request enqueues `mail.send` with the row's id and notes when it did; if the
broker is down it does not fail the request: the clock's sweep (jobs/mail.py) enqueues rows that
were never enqueued, and rows whose message was lost. The row holds no token: the worker makes
one when it sends the mail (core/tokens.py).
"""

from collections.abc import Sequence

import structlog
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.concurrency import run_in_threadpool

from ..models import Outbox
from ..task_sender import TaskSender

log = structlog.get_logger(__name__)


async def add(db: AsyncSession, kind: str, to: str, user_id: int | None = None) -> int:
    """A mail of `kind` (a template) to `to`, in the caller's transaction; its outbox id."""
    row = Outbox(kind=kind, to_address=to, user_id=user_id)
    db.add(row)
    await db.flush()
    return row.id


def _send_tasks(tasks: TaskSender, ids: Sequence[int], request_id: str | None) -> None:
    for outbox_id in ids:
        tasks.send_task("mail.send", args=[outbox_id], headers={"request_id": request_id})


async def enqueue(
    engine: AsyncEngine, tasks: TaskSender, ids: Sequence[int], request_id: str | None
) -> None:
    """Enqueue committed outbox rows; on failure the sweep will (the request goes on)."""
    if not ids:
        return
    try:
        await run_in_threadpool(_send_tasks, tasks, ids, request_id)
    except Exception as exc:
        log.warning("enqueue failed", outbox_ids=list(ids), error=type(exc).__name__)
        return
    async with engine.begin() as conn:
        await conn.execute(update(Outbox).where(Outbox.id.in_(ids)).values(enqueued_at=func.now()))
