"""Accounts: sign up, and change a password (which ends every other session of the user)."""

from typing import Annotated

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ...core.accounts import EmailTaken, create_user, credentials, normalise_email, set_password
from ...core.flags import SIGN_UP
from ...core.mail import outbox
from ...core.passwords import broken_rule
from ..deps import (
    AppSettings,
    ClientAddress,
    CurrentSession,
    DbEngine,
    DbSession,
    FeatureFlags,
    LoginThrottle,
    Passwords,
    RequestId,
    Sessions,
    Tasks,
)
from ..ratelimit import rate_limited
from .routers import api_router

router = api_router("/users", tag="accounts")

Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"format": "email"}),
    AfterValidator(normalise_email),
]
# Long enough for any password the rules accept; the real bound, in bytes, is PASSWORD_MAX_BYTES.
Password = Annotated[str, Field(min_length=1, max_length=4096)]


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Password
    new_password: Password


def check_rules(password: str, settings: AppSettings, field: str) -> None:
    # Rules that depend on config (and a list of breached passwords) are checked here, not in the
    # schema, and answered as any invalid field is.
    if (rule := broken_rule(password, settings)) is not None:
        raise RequestValidationError([{"loc": ("body", field), "msg": rule, "type": "password"}])


class SignedUp(BaseModel):
    email: str
    detail: str


SIGNED_UP = {
    "mandatory": "account created: confirm your address with the link mailed to it, then log in",
    "optional": "account created: a link to confirm your address is on its way",
    "none": "account created",
}


@router.post("", status_code=201, dependencies=[rate_limited])
async def sign_up(
    body: SignUp,
    db: DbSession,
    engine: DbEngine,
    hasher: Passwords,
    settings: AppSettings,
    flags: FeatureFlags,
    tasks: Tasks,
    request_id: RequestId,
) -> SignedUp:
    # The kill switch comes first: switched off, a sign-up costs no hash and no query.
    if not flags.enabled(SIGN_UP, None):
        raise HTTPException(503, "sign-up is switched off for now")
    check_rules(body.password, settings, "password")
    # A taken address gets the same answer, after the same hash: the owner is mailed instead,
    # so sign-up does not tell anyone else which addresses have accounts.
    mails = []
    try:
        user = await create_user(db, hasher, body.email, body.password)
        if settings.email_verification != "none":
            mails.append(await outbox.add(db, "verify-email", user.email, user.id))
    except EmailTaken:
        mails.append(await outbox.add(db, "account-exists", body.email))
    await db.commit()
    await outbox.enqueue(engine, tasks, mails, request_id)
    return SignedUp(email=body.email, detail=SIGNED_UP[settings.email_verification])


async def check_current_password(
    session: CurrentSession,
    password: str,
    db: DbSession,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
) -> None:
    # Asking for the current password again means a stolen session alone cannot take the account.
    await throttle.attempt(session.email, address)
    account = await credentials(db, session.email)
    matches, _ = await hasher.verify(account.password_hash if account else None, password)
    if account is None or not matches:
        raise HTTPException(403, "current password is wrong")
    await throttle.succeeded(session.email, address)


@router.put("/me/password", status_code=204, dependencies=[rate_limited])
async def change_password(
    body: PasswordChange,
    session: CurrentSession,
    db: DbSession,
    engine: DbEngine,
    hasher: Passwords,
    settings: AppSettings,
    store: Sessions,
    throttle: LoginThrottle,
    address: ClientAddress,
    tasks: Tasks,
    request_id: RequestId,
) -> None:
    await check_current_password(session, body.current_password, db, hasher, throttle, address)
    check_rules(body.new_password, settings, "new_password")
    new_hash = await hasher.hash(body.new_password)  # before the change takes the row's lock

    async def end_other_sessions() -> int:
        return await store.end_all(session.user_id, keep=session.handle)

    notice = await outbox.add(db, "password-changed", session.email, session.user_id)
    await set_password(db, session.user_id, new_hash, end_other_sessions)
    await outbox.enqueue(engine, tasks, [notice], request_id)


class EmailChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password
    new_email: Email


@router.put("/me/email", status_code=202, dependencies=[rate_limited])
async def change_email(
    body: EmailChange,
    session: CurrentSession,
    db: DbSession,
    engine: DbEngine,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
    tasks: Tasks,
    request_id: RequestId,
) -> None:
    """Mail a confirmation link to the new address and a notice to the old one; the address
    changes when the link is followed (POST /email-verification/confirm), if still free then."""
    await check_current_password(session, body.password, db, hasher, throttle, address)
    mails = [
        await outbox.add(db, "confirm-new-email", body.new_email, session.user_id),
        await outbox.add(db, "email-change-notice", session.email, session.user_id),
    ]
    await db.commit()
    await outbox.enqueue(engine, tasks, mails, request_id)
