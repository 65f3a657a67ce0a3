"""Log in and out: a server-side session in Redis, referenced by a signed cookie.

A wrong password and an unknown email get the same 401 after the same work (a password is
verified either way), so neither the answer nor its timing tells which emails have accounts.
How a login stays correct beside a password change or a disable: core/accounts.py.
"""

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...core.accounts import credentials, store_rehash, unchanged
from ...core.sessions import Session
from ..deps import ClientAddress, Cookie, CurrentSession, DbSession, Passwords, Sessions, Throttle
from ..ratelimit import rate_limited
from .fields import StorableText

router = APIRouter(prefix="/session", tags=["session"])


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
    throttle: Throttle,
    cookie: Cookie,
    address: ClientAddress,
) -> SessionOut:
    await throttle.attempt(login.email, address)  # counted before hashing: 429 past the limit
    account = await credentials(db, login.email)
    matches, new_hash = await hasher.verify(
        account.password_hash if account else None, login.password
    )
    if account is None or not matches or not account.is_active:
        raise HTTPException(401, "wrong email or password")
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
