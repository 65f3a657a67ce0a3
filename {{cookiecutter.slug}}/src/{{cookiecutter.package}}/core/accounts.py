"""Accounts: the queries and changes that web and the `users` admin process both make.

A login checks a password for seconds at worst (queued behind other hashes), so it reads what it
needs first, holds no database connection while it hashes, and looks at the account again once
its session exists. A change of credentials (password, disable) ends the user's sessions before
its own commit, while it holds the row's lock; the login's second look waits for that lock. So
a login that checked the old password ends up either ended by the change or refused by its own
second look, never with a live session; and if ending the sessions fails, the change does not
happen either.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Select, func, insert, null, select, update
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


def _email_is(email: str) -> ColumnElement[bool]:
    # lower() on both sides, as the unique index does: one account per address, any case.
    return func.lower(User.email) == func.lower(email.strip())


def by_email(email: str) -> Select[User]:
    return select(User).where(_email_is(email))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a login is for, once a factor is checked: enough to start a session and to see, once
    it exists, that the account did not change meanwhile (`unchanged`)."""

    user_id: int
    email: str
    is_admin: bool
    password_changed_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a login needs of an account, read before its password check."""

    user_id: int
    email: str
    is_admin: bool
    is_active: bool
    password_hash: str
    password_changed_at: datetime
    email_verified: bool | None

    @property
    def principal(self) -> Principal:
        return Principal(self.user_id, self.email, self.is_admin, self.password_changed_at)


async def credentials(
    db: AsyncSession, email: str, with_verified: bool = False
) -> Credentials | None:
    """The account's credentials; the connection goes back to the pool before the caller hashes.
    Whether its address is confirmed is read only `with_verified` (else None): only a login
    under mandatory verification asks, so no other login depends on that column."""
    columns = (User.id, User.email, User.is_admin, User.is_active, User.password_hash)
    verified = User.email_verified_at.is_not(None) if with_verified else null()
    query = select(*columns, User.password_changed_at, verified).where(_email_is(email))
    row = (await db.execute(query)).one_or_none()
    await db.close()
    return Credentials(*row) if row else None


async def unchanged(db: AsyncSession, seen: Principal) -> bool:
    """Whether the account is still active with the password that was checked. FOR SHARE waits
    for a change in progress (change_credentials holds the row) and then sees it."""
    query = select(User.is_active, User.password_changed_at).where(User.id == seen.user_id)
    row = (await db.execute(query.with_for_update(read=True))).one_or_none()
    await db.commit()
    return row is not None and row.is_active and row.password_changed_at == seen.password_changed_at


async def store_rehash(db: AsyncSession, seen: Credentials, new_hash: str) -> None:
    """Store a hash made with the current parameters, unless the password changed meanwhile."""
    await db.execute(
        update(User)
        .where(User.id == seen.user_id, User.password_hash == seen.password_hash)
        .values(password_hash=new_hash)
    )
    await db.commit()


async def change_credentials(
    db: AsyncSession, user_id: int, end_sessions: Callable[[], Awaitable[int]], **values: object
) -> int:
    """Apply `values` to the account and end its sessions, as one change (see the docstring
    above); how many sessions ended."""
    await db.execute(update(User).where(User.id == user_id).values(**values))  # locks the row
    try:
        ended = await end_sessions()
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    return ended


async def create_user(
    db: AsyncSession,
    hasher: Hasher,
    email: str,
    password: str,
    is_admin: bool = False,
    verified: bool = False,
) -> User:
    """A new account, in the caller's transaction (which commits it, with whatever else belongs
    to it); EmailTaken if the address has one already, whatever its case. Hashed first, so the
    time taken does not tell which."""
    values: dict[str, object] = {
        "email": email,
        "password_hash": await hasher.hash(password),
        "is_admin": is_admin,
    }
    if verified:
        values["email_verified_at"] = func.now()
    # An INSERT naming only these columns (the ORM's would name every one, email_verified_at
    # included), so a sign-up works on the schema before that column's migration.
    try:
        user_id = (await db.execute(insert(User).values(values).returning(User.id))).scalar_one()
    except IntegrityError:
        await db.rollback()
        raise EmailTaken(email) from None
    return await db.get_one(User, user_id)  # its columns but the deferred ones


async def set_password(
    db: AsyncSession, user_id: int, password_hash: str, end_sessions: Callable[[], Awaitable[int]]
) -> int:
    return await change_credentials(
        db, user_id, end_sessions, password_hash=password_hash, password_changed_at=func.now()
    )
