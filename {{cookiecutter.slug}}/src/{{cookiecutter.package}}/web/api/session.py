"""Log in and out: a server-side session in Redis, referenced by a signed cookie.

A wrong password and an unknown email get the same 401 after the same work (a password is
verified either way), so neither the answer nor its timing tells which emails have accounts.
"""

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...core.accounts import by_email, still_active
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
    await throttle.check(login.email, address)  # before hashing: refused guesses cost nothing
    user = (await db.scalars(by_email(login.email))).one_or_none()
    matches, new_hash = await hasher.verify(user.password_hash if user else None, login.password)
    if user is None or not matches or not user.is_active:
        await throttle.failed(login.email, address)
        raise HTTPException(401, "wrong email or password")
    if new_hash is not None:  # hashed with older parameters: store it with the current ones
        user.password_hash = new_hash
        await db.commit()
    await throttle.succeeded(login.email)
    session, value = await store.start(
        user.id,
        user.email,
        user.is_admin,
        user_agent=request.headers.get("user-agent", ""),
        old_cookie=cookie.read(request),
    )
    # `users disable` refuses logins, then ends every session of the user. A login whose
    # password was being checked meanwhile starts its session after that: look again now.
    if not await still_active(db, user.id):
        await store.end(user.id, session.handle)
        raise HTTPException(401, "wrong email or password")
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
