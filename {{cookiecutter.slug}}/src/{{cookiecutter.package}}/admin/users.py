"""`python -m {{ cookiecutter.package }} users create|disable|list`: manage accounts from a shell.

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
from sqlalchemy import select
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
from ..core.models import User
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
    commands.add_parser("disable", help="and end all their sessions").add_argument("email")
    commands.add_parser("list")
    return parser.parse_args(argv)


def print_user(user: User, **extra: object) -> None:
    line = {
        "id": user.id,
        "email": user.email,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
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


async def create(db: AsyncSession, settings: Settings, email: str, admin: bool) -> None:
    try:
        email = normalise_email(email)
    except ValueError as exc:
        fail(f"users create: email: {exc}", EX_DATAERR)
    password = read_password()
    if (rule := broken_rule(password, settings)) is not None:
        fail(f"users create: {rule}", EX_DATAERR)
    hasher = Hasher(settings)
    try:
        print_user(await create_user(db, hasher, email, password, is_admin=admin))
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
    print_user(user, sessions_ended=ended)


async def run(settings: Settings, args: argparse.Namespace) -> None:
    engine = create_async_db_engine(settings)
    try:
        async with session_factory(engine)() as db:
            if args.command == "create":
                await create(db, settings, args.email, args.admin)
            elif args.command == "disable":
                await disable(db, settings, args.email)
            else:
                for user in await db.scalars(select(User).order_by(User.id)):
                    print_user(user)
    finally:
        await engine.dispose()


def main() -> None:
    args = parse(sys.argv[2:])
    settings = load_settings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings, args))
