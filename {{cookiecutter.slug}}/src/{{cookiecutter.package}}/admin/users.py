"""`python -m {{ cookiecutter.package }} users create|disable|verify|mfa-reset|list`: manage accounts
from a shell.

Factor XII: it runs from the same build and config as `web` (same settings, same password rules,
same hashing), as a one-off: `docker compose run web python -m ... users list`, `kubectl exec`,
`heroku run`. Each result is one JSON line on stdout; bad input is one line and a non-zero exit.
A password is never an argument (argv is visible to every user of the host, and kept in shell
history): it comes from NEW_USER_PASSWORD, or else the first line of standard input.
"""

import argparse
import asyncio
import getpass
import os
import sys
from typing import NoReturn

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.accounts import (
    EmailTaken,
    by_email,
    change_credentials,
    create_user,
    normalise_email,
)
from ..core.db import create_async_db_engine, session_factory
from ..core.logging import configure_logging
from ..core.mfa import factors
from ..core.models import User
from ..core.passkeys import store as passkey_store
from ..core.passwords import Hasher, broken_rule
from ..core.redis_client import create_redis
from ..core.sessions import create_session_store
from ..core.settings import Settings, fail, load_settings

EX_DATAERR = 65  # sysexits.h: the input was wrong


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"users: {message}", EX_DATAERR)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="users")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="password from NEW_USER_PASSWORD or stdin")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true")
    create.add_argument("--verified", action="store_true", help="its address needs no confirming")
    commands.add_parser("disable", help="and end all their sessions").add_argument("email")
    commands.add_parser("verify", help="mark the address confirmed").add_argument("email")
    commands.add_parser(
        "mfa-reset", help="remove every second factor (the user lost them) and end all sessions"
    ).add_argument("email")
    commands.add_parser("list")
    return parser.parse_args(argv)


async def print_user(db: AsyncSession, user: User, **extra: object) -> None:
    # Read on its own: the column is deferred (core/models.py), so loading a user skips it.
    verified = await db.scalar(
        select(User.email_verified_at.is_not(None)).where(User.id == user.id)
    )
    line = {
        "id": user.id,
        "email": user.email,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "email_verified": verified,
        "created_at": user.created_at.isoformat(),
        **extra,
    }
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")


def read_password() -> str:
    if (password := os.environ.get("NEW_USER_PASSWORD")) is not None:
        return password
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


async def create(
    db: AsyncSession, settings: Settings, email: str, admin: bool, verified: bool
) -> None:
    try:
        email = normalise_email(email)
    except ValueError as exc:
        fail(f"users create: email: {exc}", EX_DATAERR)
    password = read_password()
    if (rule := broken_rule(password, settings)) is not None:
        fail(f"users create: {rule}", EX_DATAERR)
    hasher = Hasher(settings)
    try:
        user = await create_user(db, hasher, email, password, is_admin=admin, verified=verified)
        await db.commit()
        await print_user(db, user)
    except EmailTaken:
        fail(f"users create: an account with the email {email} exists", EX_DATAERR)
    finally:
        hasher.close()


async def disable(db: AsyncSession, settings: Settings, email: str) -> None:
    user = (await db.scalars(by_email(email))).one_or_none()
    if user is None:
        fail(f"users disable: no account with the email {email}", EX_DATAERR)
    redis = create_redis(settings)
    try:
        store = create_session_store(settings, redis)
        # Refused at the next login, and every live session ended, as one change.
        ended = await change_credentials(
            db, user.id, lambda: store.end_all(user.id), is_active=False
        )
    finally:
        await redis.aclose()
    await db.refresh(user)
    await print_user(db, user, sessions_ended=ended)


async def mfa_reset(db: AsyncSession, settings: Settings, email: str) -> None:
    """For support, once the owner has proved who they are some other way: the account is back
    to its password alone, and whoever holds a session of it is logged out."""
    user = (await db.scalars(by_email(email))).one_or_none()
    if user is None:
        fail(f"users mfa-reset: no account with the email {email}", EX_DATAERR)
    removed = await factors.remove_all(db, user.id)
    passkeys_removed = await passkey_store.remove_all(db, user.id)
    redis = create_redis(settings)
    try:
        ended = await create_session_store(settings, redis).end_all(user.id)
    finally:
        await redis.aclose()
    await db.commit()
    await print_user(
        db,
        user,
        second_factor_removed=removed,
        passkeys_removed=passkeys_removed,
        sessions_ended=ended,
    )


async def verify(db: AsyncSession, email: str) -> None:
    user = (await db.scalars(by_email(email))).one_or_none()
    if user is None:
        fail(f"users verify: no account with the email {email}", EX_DATAERR)
    await db.execute(
        update(User)
        .where(User.id == user.id, User.email_verified_at.is_(None))
        .values(email_verified_at=func.now())
    )
    await db.commit()
    await db.refresh(user)
    await print_user(db, user)


async def run(settings: Settings, args: argparse.Namespace) -> None:
    engine = create_async_db_engine(settings)
    try:
        async with session_factory(engine)() as db:
            if args.command == "create":
                await create(db, settings, args.email, args.admin, args.verified)
            elif args.command == "disable":
                await disable(db, settings, args.email)
            elif args.command == "verify":
                await verify(db, args.email)
            elif args.command == "mfa-reset":
                await mfa_reset(db, settings, args.email)
            else:
                for user in (await db.scalars(select(User).order_by(User.id))).all():
                    await print_user(db, user)
    finally:
        await engine.dispose()


def main() -> None:
    args = parse(sys.argv[2:])
    settings = load_settings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings, args))
