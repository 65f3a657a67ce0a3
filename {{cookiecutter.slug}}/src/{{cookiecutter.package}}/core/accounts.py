"""Accounts: the queries and changes that web and the `users` admin process both make."""

from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .models import User
from .passwords import Hasher


class EmailTaken(Exception):
    pass


def normalise_email(email: str) -> str:
    """The address as stored: validated, domain lower-cased, or ValueError saying why not."""
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def by_email(email: str) -> Select[User]:
    # lower() on both sides, as the unique index does: one account per address, any case.
    return select(User).where(func.lower(User.email) == func.lower(email.strip()))


async def still_active(db: AsyncSession, user_id: int) -> bool:
    """Read now, not from what the session loaded: a disable may have committed since."""
    return bool(await db.scalar(select(User.is_active).where(User.id == user_id)))


async def create_user(
    db: AsyncSession, hasher: Hasher, email: str, password: str, is_admin: bool = False
) -> User:
    """A new account; EmailTaken if the address has one already, whatever its case."""
    user = User(email=email, password_hash=await hasher.hash(password), is_admin=is_admin)
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise EmailTaken(email) from None
    await db.refresh(user)
    return user


async def set_password(db: AsyncSession, user: User, password_hash: str) -> None:
    await db.execute(
        update(User)
        .where(User.id == user.id)
        .values(password_hash=password_hash, password_changed_at=datetime.now(UTC))
    )
    await db.commit()
