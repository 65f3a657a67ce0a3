"""One-time tokens mailed to a user: to confirm an address, or to reset a password.

A token is 256 random bits. It exists in one place only, the mail: the database keeps its
SHA-256, so a leaked table or backup opens no account. Issuing one ends the user's earlier
unused tokens of the same purpose (the newest link is the one that works); redeeming one marks
it used in the same statement that checks it, so two clicks cannot both succeed. A password
reset token also dies when the password changes by any route after it was issued.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import AccountToken, User

VERIFY_EMAIL = "verify-email"
RESET_PASSWORD = "reset-password"  # noqa: S105 - a purpose, not a password


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(conn: Connection, user_id: int, purpose: str, email: str, ttl_seconds: int) -> str:
    """A new token for the user, stored as its digest; their older unused ones of this purpose
    end. Run inside the caller's transaction."""
    now = datetime.now(UTC)
    conn.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(AccountToken).values(
            user_id=user_id,
            purpose=purpose,
            token_hash=digest(token),
            email=email,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    return token


@dataclass(frozen=True, slots=True)
class Redeemed:
    user_id: int
    email: str  # the address the token was mailed to


async def redeem(db: AsyncSession, token: str, purpose: str) -> Redeemed | None:
    """Use the token, in the caller's transaction; None if it is unknown, used, expired,
    replaced by a newer one or (a reset token) older than the last password change."""
    conditions = [
        AccountToken.token_hash == digest(token),
        AccountToken.purpose == purpose,
        AccountToken.used_at.is_(None),
        AccountToken.expires_at > func.now(),
    ]
    if purpose == RESET_PASSWORD:
        changed = select(User.password_changed_at).where(User.id == AccountToken.user_id)
        conditions.append(AccountToken.created_at > changed.scalar_subquery())
    used = (
        update(AccountToken)
        .where(*conditions)
        .values(used_at=func.now())
        .returning(AccountToken.user_id, AccountToken.email)
    )
    row = (await db.execute(used)).one_or_none()
    return Redeemed(row.user_id, row.email) if row else None
