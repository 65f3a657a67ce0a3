"""The passkeys in PostgreSQL: add, list, rename, remove, and record each use.

A use moves the signature counter in one UPDATE that also checks it: authenticators that keep a
counter raise it at every signature, so an answer that does not raise it came from a copy of
the key (a cloned authenticator) or is a replay of an old one. Such an answer is refused and
logged. Authenticators that keep none (synced passkeys) always say 0, which is allowed.

Like core/mfa/factors.py, every function leaves the commit to its caller.
"""

import secrets
from dataclasses import dataclass

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..accounts import Principal
from ..models import Passkey, User
from .ceremony import NewCredential, Verified

log = structlog.get_logger(__name__)

MAX_PER_USER = 20  # keeps a login's list of allowed credentials short
USER_HANDLE_BYTES = 32


class Duplicate(Exception):
    """That credential is registered already."""


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    user_id: int
    public_key: bytes
    user_handle: bytes
    sign_count: int
    backup_eligible: bool


async def user_handle(db: AsyncSession, user_id: int) -> bytes:
    """The account's WebAuthn user handle: the one its passkeys carry, or a new random one.
    Never the email or the id: authenticators may show it to anyone who holds them."""
    existing = await db.scalar(
        select(Passkey.user_handle).where(Passkey.user_id == user_id).limit(1)
    )
    return existing if existing is not None else secrets.token_bytes(USER_HANDLE_BYTES)


async def credentials_of(db: AsyncSession, user_id: int) -> list[tuple[bytes, list[str]]]:
    """Each passkey's credential id and transports, for the options a browser is given."""
    rows = await db.execute(
        select(Passkey.credential_id, Passkey.transports)
        .where(Passkey.user_id == user_id)
        .order_by(Passkey.id)
    )
    return [(row.credential_id, list(row.transports)) for row in rows]


async def of_user(db: AsyncSession, user_id: int) -> list[Passkey]:
    result = await db.scalars(
        select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)
    )
    return list(result)


async def add(
    db: AsyncSession, user_id: int, handle: bytes, new: NewCredential, name: str
) -> Passkey:
    try:
        passkey_id = await db.scalar(
            insert(Passkey)
            .values(
                user_id=user_id,
                credential_id=new.credential_id,
                public_key=new.public_key,
                user_handle=handle,
                sign_count=new.sign_count,
                backup_eligible=new.backup_eligible,
                backed_up=new.backed_up,
                transports=new.transports,
                aaguid=new.aaguid,
                name=name,
            )
            .returning(Passkey.id)
        )
    except IntegrityError:
        await db.rollback()
        raise Duplicate from None
    return await db.get_one(Passkey, passkey_id)


async def rename(db: AsyncSession, user_id: int, passkey_id: int, name: str) -> Passkey | None:
    renamed = await db.scalar(
        update(Passkey)
        .where(Passkey.id == passkey_id, Passkey.user_id == user_id)
        .values(name=name)
        .returning(Passkey)
    )
    return renamed


async def remove(db: AsyncSession, user_id: int, passkey_id: int) -> bool:
    removed = await db.execute(
        delete(Passkey)
        .where(Passkey.id == passkey_id, Passkey.user_id == user_id)
        .returning(Passkey.id)
    )
    return removed.first() is not None


async def remove_all(db: AsyncSession, user_id: int) -> int:
    removed = await db.execute(
        delete(Passkey).where(Passkey.user_id == user_id).returning(Passkey.id)
    )
    return len(removed.all())


async def find(db: AsyncSession, credential_id: bytes) -> Stored | None:
    row = (
        await db.execute(
            select(
                Passkey.id,
                Passkey.user_id,
                Passkey.public_key,
                Passkey.user_handle,
                Passkey.sign_count,
                Passkey.backup_eligible,
            ).where(Passkey.credential_id == credential_id)
        )
    ).one_or_none()
    return Stored(*row) if row else None


async def owner(db: AsyncSession, user_id: int) -> Principal | None:
    """Who a passkey login is for, if the account is active."""
    row = (
        await db.execute(
            select(User.id, User.email, User.is_admin, User.password_changed_at).where(
                User.id == user_id, User.is_active
            )
        )
    ).one_or_none()
    return Principal(*row) if row else None


async def record_use(db: AsyncSession, stored: Stored, verified: Verified) -> bool:
    """Store the new counter and backup state; False (and a warning logged) if the counter did
    not go up, or the credential now says it is of another kind than when it was registered."""
    counted = verified.sign_count > 0 or stored.sign_count > 0
    if (counted and verified.sign_count <= stored.sign_count) or (
        verified.backup_eligible != stored.backup_eligible
    ):
        log.warning(
            "passkey refused: counter went backwards or backup eligibility changed "
            "(a cloned authenticator?)",
            user_id=stored.user_id,
            passkey_id=stored.id,
            stored_sign_count=stored.sign_count,
            sign_count=verified.sign_count,
            backup_eligible=verified.backup_eligible,
        )
        return False
    # Compared with the count read above: of two answers racing with the same count, one wins.
    moved = await db.execute(
        update(Passkey)
        .where(Passkey.id == stored.id, Passkey.sign_count == stored.sign_count)
        .values(
            sign_count=verified.sign_count, backed_up=verified.backed_up, last_used_at=func.now()
        )
        .returning(Passkey.id)
    )
    if moved.first() is None:
        log.warning(
            "passkey refused: counter moved by a concurrent login",
            user_id=stored.user_id,
            passkey_id=stored.id,
        )
        return False
    return True
