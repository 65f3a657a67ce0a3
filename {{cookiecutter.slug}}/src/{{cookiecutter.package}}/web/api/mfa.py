"""A second factor for the logged-in account: enrol an authenticator app, get recovery codes,
turn it off (core/mfa/).

Enrolment shows the secret once and turns the factor on only when a code from the app proves it
was stored. Turning it off, or replacing the recovery codes, needs the password and a current
code: a stolen session alone can do neither. Each of these ends the account's other sessions and
mails the owner a notice.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ...core.mail import outbox
from ...core.mfa import factors, totp
from ..deps import (
    AppSettings,
    ClientAddress,
    CurrentSession,
    DbEngine,
    DbSession,
    LoginThrottle,
    MfaSecrets,
    Passwords,
    RequestId,
    Sessions,
    Tasks,
)
from ..ratelimit import rate_limited
from .routers import api_router
from .users import Password, check_current_password

router = api_router("/mfa", tag="second factor")

NOTICE = "sign-in-changed"  # the mail each change sends (core/mail/templates/)


class SecondFactors(BaseModel):
    totp: bool
    recovery_codes_left: int


class TotpEnrolment(BaseModel):
    secret: str = Field(description="base32, for typing into the app by hand; shown once")
    otpauth_uri: str = Field(description="the same secret as a QR code's content")


class Code(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=64)


class PasswordAndCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password
    code: str = Field(
        min_length=6, max_length=64, description="from the authenticator app, or a recovery code"
    )


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="each works once; shown only now")


@router.get("")
async def second_factors(session: CurrentSession, db: DbSession) -> SecondFactors:
    status = await factors.status(db, session.user_id)
    return SecondFactors(totp=status.totp, recovery_codes_left=status.recovery_codes_left)


@router.post("/totp", status_code=201, dependencies=[rate_limited])
async def enrol_totp(
    session: CurrentSession, db: DbSession, box: MfaSecrets, settings: AppSettings
) -> TotpEnrolment:
    secret = await factors.start_totp(db, box, session.user_id)
    if secret is None:
        raise HTTPException(409, "an authenticator is already on: turn it off first")
    await db.commit()
    return TotpEnrolment(
        secret=totp.base32(secret),
        otpauth_uri=totp.otpauth_uri(secret, session.email, settings.mfa_issuer),
    )


SignInChange = Callable[[], Awaitable[None]]


async def _sign_in_changed(
    session: CurrentSession,
    db: DbSession,
    engine: DbEngine,
    store: Sessions,
    tasks: Tasks,
    request_id: RequestId,
) -> SignInChange:
    """`await changed()`: commit a change of sign-in methods; the other sessions end, the owner
    is told."""

    async def changed() -> None:
        notice = await outbox.add(db, NOTICE, session.email, session.user_id)
        await store.end_all(session.user_id, keep=session.handle)
        await db.commit()
        await outbox.enqueue(engine, tasks, [notice], request_id)

    return changed


SignInChanged = Annotated[SignInChange, Depends(_sign_in_changed)]


@router.post("/totp/confirm", dependencies=[rate_limited])
async def confirm_totp(
    body: Code,
    session: CurrentSession,
    db: DbSession,
    box: MfaSecrets,
    changed: SignInChanged,
) -> RecoveryCodes:
    if not await factors.check_totp(db, box, session.user_id, body.code, confirming=True):
        raise HTTPException(400, "wrong code, or no authenticator being added: start again")
    codes = await factors.replace_recovery_codes(db, session.user_id)
    await changed()
    return RecoveryCodes(recovery_codes=codes)


async def _password_and_code(
    body: PasswordAndCode,
    session: CurrentSession,
    db: DbSession,
    box: MfaSecrets,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
) -> None:
    await check_current_password(session, body.password, db, hasher, throttle, address)
    await throttle.attempt(session.email, address)
    if not await factors.check_code(db, box, session.user_id, body.code):
        await db.rollback()
        raise HTTPException(403, "wrong code")
    await throttle.succeeded(session.email, address)


@router.delete("/totp", status_code=204, dependencies=[rate_limited])
async def turn_off(
    body: PasswordAndCode,
    session: CurrentSession,
    db: DbSession,
    box: MfaSecrets,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
    changed: SignInChanged,
) -> None:
    await _password_and_code(body, session, db, box, hasher, throttle, address)
    await factors.remove_all(db, session.user_id)
    await changed()


@router.post("/recovery-codes", dependencies=[rate_limited])
async def new_recovery_codes(
    body: PasswordAndCode,
    session: CurrentSession,
    db: DbSession,
    box: MfaSecrets,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
    changed: SignInChanged,
) -> RecoveryCodes:
    await _password_and_code(body, session, db, box, hasher, throttle, address)
    codes = await factors.replace_recovery_codes(db, session.user_id)
    await changed()
    return RecoveryCodes(recovery_codes=codes)
