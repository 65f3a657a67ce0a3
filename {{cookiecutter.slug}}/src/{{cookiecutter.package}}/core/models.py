"""The tables. Alembic migrations in `migrations/versions/` create them; nothing else does."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    # Unique whatever the case: Ann@Example.com and ann@example.com are one account.
    __table_args__ = (Index("ix_users_email_lower", text("lower(email)"), unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))  # as normalised at sign-up
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    password_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Set when the owner of the address followed a link mailed to it (core/tokens.py). Deferred,
    # as `notes.summary` is: only what needs it reads it (expand/contract, see the README).
    email_verified_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), deferred=True
    )


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_owner_id", "owner_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL only for notes written before accounts existed (see migration 0002).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Filled in by the worker's enrich_note task; NULL until it has run.
    word_count: Mapped[int | None] = mapped_column(Integer)
    # Filled in only while the `note-summary` flag is on for the note's owner (core/flags.py).
    # Expand/contract (README, "Releases side by side"): added by migration 0003, so until the
    # contract release nothing selects or writes it unless that flag is on. Deferred: a plain
    # select(Note) leaves it out; readers ask for it with undefer() (web/api/notes.py).
    summary: Mapped[str | None] = mapped_column(Text, deferred=True)
    enriched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Heartbeat(Base):
    __tablename__ = "heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique, so a redelivered heartbeat task is stored once.
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    ran_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class DeadLetter(Base):
    """A task that failed for good, or a message no worker could run: recorded so that a failure
    is never silent, and kept after `jobs dead redrive` sends it again (the audit trail)."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_waiting", "task_name", postgresql_where=text("redriven_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_name: Mapped[str] = mapped_column(String(200))
    args: Mapped[Any] = mapped_column(JSON)
    kwargs: Mapped[Any] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    failed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    attempts: Mapped[int | None] = mapped_column(Integer)  # NULL: never ran (see `message`)
    # Set in the transaction that sends the task again; never cleared.
    redriven_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redriven_task_id: Mapped[str | None] = mapped_column(String(64))
    # The redriven task ran to the end; until then the clock's sweep may send it again.
    redrive_succeeded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The dead letter this task was redriven from, when it failed for good again.
    redriven_from: Mapped[int | None] = mapped_column(
        ForeignKey("dead_letters.id", ondelete="SET NULL")
    )
    # The raw message of one no worker could run (unknown task name, undecodable body):
    # {"body": base64, "headers", "content_type", "content_encoding"}: a redrive sends it as it
    # came.
    message: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    trace_parent: Mapped[str | None] = mapped_column(String(64))  # W3C traceparent it ran in


class AccountToken(Base):
    """A one-time token mailed to a user: only its SHA-256 is kept, never the token itself."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user_purpose", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(32))  # "verify-email" or "reset-password"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))  # the address the token was mailed to
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox(Base):
    """A mail to send, written in the same transaction as the change that calls for it; the
    worker sends it (jobs/mail.py), and the clock's sweep enqueues what a request could not."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # a template in core/mail/templates/
    to_address: Mapped[str] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")


class TotpFactor(Base):
    """A user's authenticator app (core/mfa/): active once confirmed with a code from it."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted: core/mfa/secretbox.py
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The newest time step a code was accepted for: a code is good once, never again.
    last_step: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RecoveryCode(Base):
    """One of a user's single-use recovery codes, kept as a SHA-256 (each has 120 random bits)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Passkey(Base):
    """A WebAuthn credential (core/passkeys/): its public key, never anything secret."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE, as the authenticator gave it
    # The WebAuthn user.id the authenticator keeps beside the credential: random, not the email.
    user_handle: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    backup_eligible: Mapped[bool] = mapped_column(Boolean)  # may be synced (a multi-device key)
    backed_up: Mapped[bool] = mapped_column(Boolean)  # is synced now; changes over time
    transports: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    aaguid: Mapped[str] = mapped_column(String(36))  # the authenticator's model, zeros if unsaid
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
