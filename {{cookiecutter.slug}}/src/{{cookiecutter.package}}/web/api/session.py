"""Log in and out: a server-side session in Redis, referenced by a signed cookie.

A wrong password and an unknown email get the same 401 after the same work (a password is
verified either way), so neither the answer nor its timing tells which emails have accounts.
How a login stays correct beside a password change or a disable: core/accounts.py.
"""

from datetime import UTC, datetime

from fastapi import HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...core.accounts import credentials, store_rehash, unchanged
from ...core.sessions import Session
from ..deps import (
    AppSettings,
    ClientAddress,
    Cookie,
    CurrentSession,
    DbSession,
    LoginThrottle,
    Passwords,
    Sessions,
)
from ..ratelimit import rate_limited
from .fields import StorableText
from .routers import api_router

router = api_router("/session", tag="session")


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Storable: the login looks the email up in PostgreSQL, which cannot take a NUL.
    email: StorableText = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=4096)


class SessionUser(BaseModel):
    id: int
    email: str
    is_admin: bool


class SessionOut(BaseModel):
    user: SessionUser
    created_at: datetime
    expires_at: datetime = Field(description="the absolute end, however active the session is")

    @classmethod
    def of(cls, session: Session) -> "SessionOut":
        return cls(
            user=SessionUser(id=session.user_id, email=session.email, is_admin=session.is_admin),
            created_at=datetime.fromtimestamp(session.created_at, UTC),
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )


@router.post("", status_code=201, dependencies=[rate_limited])
async def log_in(
    login: Login,
    request: Request,
    response: Response,
    db: DbSession,
    hasher: Passwords,
    store: Sessions,
    throttle: LoginThrottle,
    cookie: Cookie,
    address: ClientAddress,
    settings: AppSettings,
) -> SessionOut:
    await throttle.attempt(login.email, address)  # counted before hashing: 429 past the limit
    mandatory = settings.email_verification == "mandatory"
    account = await credentials(db, login.email, with_verified=mandatory)
    matches, new_hash = await hasher.verify(
        account.password_hash if account else None, login.password
    )
    if account is None or not matches or not account.is_active:
        raise HTTPException(401, "wrong email or password")
    # Only now, after the password: the answer tells nothing to whoever does not know it.
    if mandatory and not account.email_verified:
        await throttle.succeeded(login.email, address)
        raise HTTPException(
            403, "email address not confirmed: follow the link mailed to it, or ask for another"
        )
    if new_hash is not None:  # hashed with older parameters: store it with the current ones
        await store_rehash(db, account, new_hash)
    session, value = await store.start(
        account.user_id,
        account.email,
        account.is_admin,
        user_agent=request.headers.get("user-agent", ""),
        old_cookie=cookie.read(request),
    )
    # A password change or a disable may have happened while the password was being checked.
    if not await unchanged(db, account):
        await store.end(account.user_id, session.handle)
        raise HTTPException(401, "wrong email or password")
    await throttle.succeeded(login.email, address)
    cookie.set(response, value)
    return SessionOut.of(session)


@router.get("")
async def current(session: CurrentSession) -> SessionOut:
    return SessionOut.of(session)


@router.delete("", status_code=204, dependencies=[rate_limited])
async def log_out(
    session: CurrentSession, response: Response, store: Sessions, cookie: Cookie
) -> None:
    await store.end(session.user_id, session.handle)
    cookie.clear(response)
