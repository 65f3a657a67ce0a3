"""Recovery by mail: reset a forgotten password, confirm an address (OWASP ASVS 5 V6.4).

Asking for a mail answers 202 with the same body, after the same work, whether or not an
account has the address: the request only writes an outbox row, and the worker decides whether
anyone gets a mail. So neither the answer nor its timing tells who has an account here. Those
requests are throttled per address and per client address. The links carry a one-time token
(core/tokens.py) in their fragment, which browsers send to no server; the front end posts it here.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ...core import tokens
from ...core.accounts import change_credentials
from ...core.mail import outbox
from ...core.models import User
from ..deps import (
    AppSettings,
    ClientAddress,
    DbEngine,
    DbSession,
    MailThrottle,
    Passwords,
    RequestId,
    Sessions,
    Tasks,
)
from ..ratelimit import rate_limited
from .routers import api_router
from .users import Email, check_rules

router = api_router(tag="recovery")

Token = Annotated[str, Field(min_length=1, max_length=100)]


class MailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Token
    password: Annotated[str, Field(min_length=1, max_length=4096)]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Token


class Accepted(BaseModel):
    detail: str


class Verified(BaseModel):
    email: str
    verified: bool


INVALID_LINK = "this link is used, expired or replaced by a newer one: ask for a new one"


MailLater = Callable[[str, str], Awaitable[None]]


async def _mail_later(
    db: DbSession,
    engine: DbEngine,
    tasks: Tasks,
    request_id: RequestId,
    throttle: MailThrottle,
    address: ClientAddress,
) -> MailLater:
    """`await mail_later(kind, email)`: counted against the mail throttle, an outbox row
    committed, and enqueued; the same work whether or not anyone has the address."""

    async def mail_later(kind: str, email: str) -> None:
        await throttle.attempt(email, address)
        mail = await outbox.add(db, kind, email)
        await db.commit()
        await outbox.enqueue(engine, tasks, [mail], request_id)

    return mail_later


MailRequested = Annotated[MailLater, Depends(_mail_later)]


@router.post("/password-reset", status_code=202, dependencies=[rate_limited])
async def request_password_reset(body: MailRequest, mail_later: MailRequested) -> Accepted:
    await mail_later("reset-password", body.email)
    return Accepted(detail="if an account has this address, a reset link is on its way")


@router.post("/password-reset/confirm", status_code=204, dependencies=[rate_limited])
async def reset_password(
    body: ResetConfirm,
    db: DbSession,
    engine: DbEngine,
    hasher: Passwords,
    settings: AppSettings,
    store: Sessions,
    tasks: Tasks,
    request_id: RequestId,
) -> None:
    check_rules(body.password, settings, "password")
    new_hash = await hasher.hash(body.password)  # before the transaction: no connection held
    # One transaction: the token is used, the password changes, every session ends and the
    # notice is written, or none of it happens.
    redeemed = await tokens.redeem(db, body.token, tokens.RESET_PASSWORD)
    if redeemed is None:
        raise HTTPException(400, INVALID_LINK)
    notice = await outbox.add(db, "password-changed", redeemed.email, redeemed.user_id)
    await change_credentials(
        db,
        redeemed.user_id,
        lambda: store.end_all(redeemed.user_id),
        password_hash=new_hash,
        password_changed_at=func.now(),
    )
    await outbox.enqueue(engine, tasks, [notice], request_id)


@router.post("/email-verification", status_code=202, dependencies=[rate_limited])
async def request_verification(body: MailRequest, mail_later: MailRequested) -> Accepted:
    await mail_later("verify-email", body.email)
    return Accepted(detail="if an unconfirmed account has this address, a link is on its way")


@router.post("/email-verification/confirm", dependencies=[rate_limited])
async def confirm_email(body: TokenIn, db: DbSession, store: Sessions) -> Verified:
    redeemed = await tokens.redeem(db, body.token, tokens.VERIFY_EMAIL)
    if redeemed is None:
        raise HTTPException(400, INVALID_LINK)
    current = await db.scalar(select(User.email).where(User.id == redeemed.user_id))
    if current == redeemed.email:  # the sign-up address
        await db.execute(
            update(User).where(User.id == redeemed.user_id).values(email_verified_at=func.now())
        )
        await db.commit()
        return Verified(email=redeemed.email, verified=True)
    # A new address: it becomes the account's now, if no other account took it meanwhile. The
    # address is part of every session, so they end; the user logs in with the new one.
    try:
        await change_credentials(
            db,
            redeemed.user_id,
            lambda: store.end_all(redeemed.user_id),
            email=redeemed.email,
            email_verified_at=func.now(),
        )
    except IntegrityError:
        raise HTTPException(409, "an account with this email exists") from None
    return Verified(email=redeemed.email, verified=True)
