"""Log in and out: a server-side session in Redis, referenced by a signed cookie.

A wrong password and an unknown email get the same 401 after the same work (a password is
verified either way), so neither the answer nor its timing tells which emails have accounts.
How a login stays correct beside a password change or a disable: core/accounts.py.

With a second factor on (core/mfa/), the right password starts no session: it answers 202 and a
pending login, whose cookie only `POST /session/mfa` reads; a code from the authenticator, or a
recovery code, then starts the session. Wrong codes count against the same account throttle as
wrong passwords.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from ...core.accounts import Principal, credentials, store_rehash, unchanged
from ...core.mfa import factors
from ...core.mfa.pending import PendingLogins
from ...core.sessions import Session
from ..cookie import SessionCookie
from ..deps import (
    AppSettings,
    ClientAddress,
    Cookie,
    CurrentSession,
    DbSession,
    LoginThrottle,
    MfaSecrets,
    Passwords,
    Pending,
    PendingCookie,
    Sessions,
)
from ..ratelimit import Throttle, rate_limited
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


class SecondFactorRequired(BaseModel):
    mfa_required: bool = True
    methods: list[factors.Method] = Field(
        description="what the account can give: a code (POST /session/mfa; a recovery code "
        "too) or a passkey (POST /passkeys/second-factor/options)"
    )
    expires_at: datetime = Field(description="give the second factor before this")


async def begin_session(
    principal: Principal,
    request: Request,
    response: Response,
    db: DbSession,
    store: Sessions,
    cookie: Cookie,
    throttle: Throttle | None,
    address: str,
) -> SessionOut:
    """Start the session of a login whose factors are all checked (a new id: the old one ends).
    `throttle` gets the attempt back; None for a login that was not counted (a passkey alone)."""
    session, value = await store.start(
        principal.user_id,
        principal.email,
        principal.is_admin,
        user_agent=request.headers.get("user-agent", ""),
        old_cookie=cookie.read(request),
    )
    # A password change or a disable may have happened while the factors were being checked.
    if not await unchanged(db, principal):
        await store.end(principal.user_id, session.handle)
        raise HTTPException(401, "wrong email or password")
    if throttle is not None:
        await throttle.succeeded(principal.email, address)
    cookie.set(response, value)
    return SessionOut.of(session)


@router.post(
    "",
    status_code=201,
    dependencies=[rate_limited],
    responses={202: {"model": SecondFactorRequired, "description": "password right, code next"}},
)
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
    pending: Pending,
    pending_cookie: PendingCookie,
) -> SessionOut | SecondFactorRequired:
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
    if methods := await factors.second_factors(db, account.user_id):
        # The password was right: its attempt is given back, and each code is counted anew.
        await throttle.succeeded(login.email, address)
        pending_cookie.set(response, await pending.begin(account.principal))
        response.status_code = 202
        expires_at = datetime.now(UTC) + timedelta(seconds=pending.ttl)
        return SecondFactorRequired(methods=methods, expires_at=expires_at)
    return await begin_session(
        account.principal, request, response, db, store, cookie, throttle, address
    )


NO_LOGIN_WAITING = "no login is waiting for a second factor: log in again"


@dataclass(frozen=True, slots=True)
class WaitingLogin:
    """The login this client's pending cookie names, which owes its second factor."""

    principal: Principal
    token: str
    _pending: PendingLogins
    _cookie: SessionCookie

    @property
    def binding(self) -> str:
        # What a challenge for this login is bound to: never the token itself.
        return hashlib.sha256(self.token.encode()).hexdigest()

    async def end(self, response: Response, db: AsyncSession) -> None:
        """Once its factor passed (and was used in `db`'s transaction): one pending login, one
        session, so of two concurrent answers one wins and the other's use rolls back."""
        if not await self._pending.finish(self.token):
            await db.rollback()
            raise HTTPException(401, NO_LOGIN_WAITING)
        await db.commit()
        self._cookie.clear(response)


async def waiting_login(
    request: Request, pending: PendingLogins, pending_cookie: SessionCookie
) -> WaitingLogin:
    """Called in the route, after its body is checked: a bad body is a 422 with or without a
    pending login."""
    token = pending_cookie.read(request)
    principal = await pending.get(token)
    if token is None or principal is None:
        raise HTTPException(401, NO_LOGIN_WAITING)
    return WaitingLogin(principal, token, pending, pending_cookie)


class SecondFactor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=6, max_length=64, description="from the authenticator app, or a recovery code"
    )


@router.post("/mfa", status_code=201, dependencies=[rate_limited])
async def give_second_factor(
    body: SecondFactor,
    request: Request,
    response: Response,
    db: DbSession,
    box: MfaSecrets,
    store: Sessions,
    throttle: LoginThrottle,
    cookie: Cookie,
    address: ClientAddress,
    pending: Pending,
    pending_cookie: PendingCookie,
) -> SessionOut:
    waiting = await waiting_login(request, pending, pending_cookie)
    principal = waiting.principal
    await throttle.attempt(principal.email, address)  # a wrong code counts as a wrong password
    if not await factors.check_code(db, box, principal.user_id, body.code):
        await db.rollback()
        raise HTTPException(401, "wrong code")
    await waiting.end(response, db)
    return await begin_session(principal, request, response, db, store, cookie, throttle, address)


@router.get("")
async def current(session: CurrentSession) -> SessionOut:
    return SessionOut.of(session)


@router.delete("", status_code=204, dependencies=[rate_limited])
async def log_out(
    session: CurrentSession, response: Response, store: Sessions, cookie: Cookie
) -> None:
    await store.end(session.user_id, session.handle)
    cookie.clear(response)
