"""The worker's mail tasks: send one outbox row (core/mail/outbox.py), and sweep up rows that no
request managed to enqueue.

Each outbox row is mailed at most once. The step that decides to send marks the row sent, and
makes the token its link carries, in one committed transaction; only then does the message go to
the server. A redelivered copy of the task finds the row taken and stops. If the server refuses
or cannot be reached, the mark and the token are undone and the task retries with backoff; a
worker killed between the commit and the send loses that one mail rather than sending it twice.
The Message-ID comes from the row, so a server that saw a message once drops a copy.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import shared_task
from sqlalchemy import Connection, func, or_, select, update

from ..core import tokens
from ..core.mail import smtp
from ..core.mail.messages import compose
from ..core.models import AccountToken, Outbox, User
from ..core.settings import Settings
from .tasks import TRANSIENT, ReliableTask

log = structlog.get_logger(__name__)


class MailTask(ReliableTask):
    transient = (*TRANSIENT, smtp.TemporaryFailure)


def _fill(conn: Connection, settings: Settings, row: Any) -> tuple[dict[str, str], str | None]:
    """The template's values for this row, and the token made for it; ({}, None) when the mail
    is no longer needed (no such account, or the address is already confirmed)."""
    page = settings.public_url
    hours = str(settings.email_verification_ttl_seconds // 3600)
    if row.kind in ("verify-email", "confirm-new-email"):
        user = select(User.id).where(func.lower(User.email) == func.lower(row.to_address))
        user_id = row.user_id
        if row.kind == "verify-email":  # asked for by address: only an unconfirmed account
            user_id = conn.scalar(user.where(User.email_verified_at.is_(None)))
        if user_id is None:
            return {}, None
        ttl = settings.email_verification_ttl_seconds
        token = tokens.issue(conn, user_id, tokens.VERIFY_EMAIL, row.to_address, ttl)
        return {"link": f"{page}/verify-email#token={token}", "hours": hours}, token
    if row.kind == "reset-password":
        active = select(User.id).where(
            func.lower(User.email) == func.lower(row.to_address), User.is_active
        )
        if (user_id := conn.scalar(active)) is None:
            return {}, None
        ttl = settings.password_reset_ttl_seconds
        token = tokens.issue(conn, user_id, tokens.RESET_PASSWORD, row.to_address, ttl)
        minutes = str(ttl // 60)
        return {"link": f"{page}/reset-password#token={token}", "minutes": minutes}, token
    return {"link": f"{page}/reset-password"}, None  # the notices: no token


@shared_task(bind=True, base=MailTask, name="mail.send")
def send_mail(self: MailTask, outbox_id: int) -> None:
    settings: Settings = self.app.settings
    with self.app.engine.begin() as conn:
        row = conn.execute(
            update(Outbox)
            .where(Outbox.id == outbox_id, Outbox.sent_at.is_(None))
            .values(sent_at=func.now(), attempts=Outbox.attempts + 1)
            .returning(Outbox.kind, Outbox.to_address, Outbox.user_id, Outbox.created_at)
        ).first()
        if row is None:
            log.info("mail already sent", outbox_id=outbox_id)
            return
        values, token = _fill(conn, settings, row)
    if not values:
        self.app.metrics.mails.labels(row.kind, "skipped").inc()
        log.info("mail not needed", outbox_id=outbox_id, kind=row.kind)
        return
    message_id = f"outbox-{outbox_id}-{int(row.created_at.timestamp())}"
    message = compose(row.kind, settings.mail_from, row.to_address, message_id, values)
    try:
        smtp.send(settings.smtp_url.get_secret_value(), message, settings.smtp_timeout_seconds)
    except Exception as exc:
        with self.app.engine.begin() as conn:  # not sent: undo the mark, and end its token
            conn.execute(update(Outbox).where(Outbox.id == outbox_id).values(sent_at=None))
            if token is not None:
                conn.execute(
                    update(AccountToken)
                    .where(AccountToken.token_hash == tokens.digest(token))
                    .values(used_at=func.now())
                )
        self.app.metrics.mails.labels(row.kind, "failed").inc()
        log.warning("mail not sent", outbox_id=outbox_id, kind=row.kind, error=type(exc).__name__)
        raise
    self.app.metrics.mails.labels(row.kind, "sent").inc()
    log.info("mail sent", outbox_id=outbox_id, kind=row.kind)


@shared_task(bind=True, base=ReliableTask, name="mail.sweep")
def sweep_outbox(self: ReliableTask) -> None:
    """Enqueue outbox rows never tried: those no request could enqueue (broker down) once they
    have waited a sweep interval, and those whose message was lost (queued for longer than the
    broker's visibility timeout). Rows being retried or dead-lettered are the task's own."""
    settings: Settings = self.app.settings
    now = datetime.now(UTC)
    settled = now - timedelta(seconds=settings.outbox_sweep_seconds)
    lost = now - timedelta(seconds=settings.broker_visibility_timeout_seconds)
    with self.app.engine.begin() as conn:
        ids = conn.scalars(
            update(Outbox)
            .where(
                Outbox.sent_at.is_(None),
                Outbox.attempts == 0,
                or_(
                    Outbox.enqueued_at.is_(None) & (Outbox.created_at < settled),
                    Outbox.enqueued_at < lost,
                ),
            )
            .values(enqueued_at=func.now())
            .returning(Outbox.id)
        ).all()
    for outbox_id in ids:
        send_mail.apply_async(args=[outbox_id], headers={"request_id": self.request.id})
    if ids:
        log.info("enqueued outbox mails", count=len(ids))
