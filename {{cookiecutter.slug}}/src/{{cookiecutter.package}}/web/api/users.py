"""Accounts: sign up, and change a password (which ends every other session of the user)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ...core.accounts import EmailTaken, create_user, credentials, normalise_email, set_password
from ...core.flags import SIGN_UP
from ...core.passwords import broken_rule
from ..deps import (
    AppSettings,
    ClientAddress,
    CurrentSession,
    DbSession,
    FeatureFlags,
    Passwords,
    Sessions,
    Throttle,
)
from ..ratelimit import rate_limited

router = APIRouter(prefix="/users", tags=["accounts"])

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


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    is_admin: bool
    created_at: datetime


def _check_rules(password: str, settings: AppSettings, field: str) -> None:
    # Rules that depend on config (and a list of breached passwords) are checked here, not in the
    # schema, and answered as any invalid field is.
    if (rule := broken_rule(password, settings)) is not None:
        raise RequestValidationError([{"loc": ("body", field), "msg": rule, "type": "password"}])


@router.post("", status_code=201, dependencies=[rate_limited])
async def sign_up(
    body: SignUp, db: DbSession, hasher: Passwords, settings: AppSettings, flags: FeatureFlags
) -> UserOut:
    # The kill switch comes first: switched off, a sign-up costs no hash and no query.
    if not flags.enabled(SIGN_UP, None):
        raise HTTPException(503, "sign-up is switched off for now")
    _check_rules(body.password, settings, "password")
    try:
        user = await create_user(db, hasher, body.email, body.password)
    except EmailTaken:
        raise HTTPException(409, "an account with this email exists") from None
    return UserOut.model_validate(user)


@router.put("/me/password", status_code=204, dependencies=[rate_limited])
async def change_password(
    body: PasswordChange,
    session: CurrentSession,
    db: DbSession,
    hasher: Passwords,
    settings: AppSettings,
    store: Sessions,
    throttle: Throttle,
    address: ClientAddress,
) -> None:
    # Asking for the current password again means a stolen session alone cannot take the account.
    await throttle.attempt(session.email, address)
    account = await credentials(db, session.email)
    stored = account.password_hash if account else None
    matches, _ = await hasher.verify(stored, body.current_password)
    if account is None or not matches:
        raise HTTPException(403, "current password is wrong")
    await throttle.succeeded(session.email, address)
    _check_rules(body.new_password, settings, "new_password")
    new_hash = await hasher.hash(body.new_password)  # before the change takes the row's lock

    async def end_other_sessions() -> int:
        return await store.end_all(session.user_id, keep=session.handle)

    await set_password(db, session.user_id, new_hash, end_other_sessions)
