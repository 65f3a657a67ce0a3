"""Passkeys (core/passkeys/): add them to an account, list, rename and remove them, and log in
with one, alone or as the second factor after a password.

Every ceremony is two requests: `.../options` gives the browser what to pass to
`navigator.credentials.create()` or `.get()` (a fresh challenge, kept in Redis), and the next
request sends back the browser's answer, `PublicKeyCredential.toJSON()`, to be checked.

- A passkey alone logs in: it is possession and user verification together, so it starts a
  session without a password (and without a second factor: it is both).
- After a password, a passkey is a second factor, as an authenticator app's code is: an account
  with a passkey is asked for one at every password login (core/mfa/factors.py).
- Adding one needs only the session (it adds a way in, and the owner is mailed); removing one
  needs the password too, as turning TOTP off needs password and code: a stolen session alone
  must not strip the account's strongest factor. Both end the account's other sessions.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ...core.models import Passkey
from ...core.passkeys import ceremony, store
from ...core.passkeys.challenges import Ceremony
from ..deps import (
    AppSettings,
    ClientAddress,
    Cookie,
    CurrentSession,
    DbSession,
    LoginThrottle,
    PasskeyChallenges,
    Passwords,
    Pending,
    PendingCookie,
    Sessions,
)
from ..ratelimit import rate_limited
from .fields import RowId, StorableText
from .mfa import SignInChanged
from .routers import api_router
from .session import SessionOut, begin_session, waiting_login
from .users import Password, check_current_password

router = api_router("/passkeys", tag="passkeys")

Name = Annotated[
    StorableText, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]
PasskeyId = Annotated[RowId, Path()]


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backup_eligible: bool = Field(description="may be synced to the owner's other devices")
    backed_up: bool = Field(description="is synced now (as of its last use)")
    transports: list[str]
    aaguid: str = Field(description="the authenticator's model; zeros when it does not say")

    @classmethod
    def of(cls, passkey: Passkey) -> "PasskeyOut":
        return cls(
            id=passkey.id,
            name=passkey.name,
            created_at=passkey.created_at,
            last_used_at=passkey.last_used_at,
            backup_eligible=passkey.backup_eligible,
            backed_up=passkey.backed_up,
            transports=list(passkey.transports),
            aaguid=passkey.aaguid,
        )


class PasskeyList(BaseModel):
    items: list[PasskeyOut]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: dict[str, Any] = Field(
        description="the browser's answer: PublicKeyCredential.toJSON(), base64url fields"
    )


class NewPasskey(Answer):
    name: Name = "Passkey"


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name


class Removal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password


Options = dict[str, Any]
NOT_ACCEPTED = "passkey not accepted"  # one answer for every failed login: it tells nothing


# Registration (logged in).


@router.post("/registration/options", dependencies=[rate_limited])
async def registration_options(
    session: CurrentSession, db: DbSession, settings: AppSettings, challenges: PasskeyChallenges
) -> Options:
    """Options for `navigator.credentials.create()`: a discoverable credential, user verified."""
    existing = await store.credentials_of(db, session.user_id)
    if len(existing) >= store.MAX_PER_USER:
        raise HTTPException(409, f"at most {store.MAX_PER_USER} passkeys: remove one first")
    handle = await store.user_handle(db, session.user_id)
    await db.close()
    # The handle travels with the challenge: the passkey is stored under the one it was made for.
    challenge = await challenges.issue(Ceremony.REGISTER, f"{session.handle}:{handle.hex()}")
    return ceremony.registration_options(settings, challenge, handle, session.email, existing)


@router.post("", status_code=201, dependencies=[rate_limited])
async def register(
    body: NewPasskey,
    session: CurrentSession,
    db: DbSession,
    settings: AppSettings,
    challenges: PasskeyChallenges,
    changed: SignInChanged,
) -> PasskeyOut:
    try:
        parsed, challenge = ceremony.parse_registration(body.credential)
    except ceremony.Refused as exc:
        raise HTTPException(400, str(exc)) from None
    issued_to = await challenges.take(Ceremony.REGISTER, challenge)
    session_handle, _, user_handle = (issued_to or "").partition(":")
    if issued_to is None or session_handle != session.handle:
        raise HTTPException(400, "challenge unknown, used or expired: ask for new options")
    try:
        new = ceremony.verify_registration(settings, parsed, challenge)
    except ceremony.Refused as exc:
        raise HTTPException(400, f"passkey not registered: {exc}") from None
    try:
        passkey = await store.add(db, session.user_id, bytes.fromhex(user_handle), new, body.name)
    except store.Duplicate:
        raise HTTPException(409, "this passkey is registered already") from None
    out = PasskeyOut.of(passkey)
    await changed()
    return out


# Login with a passkey alone.


@router.post("/login/options", dependencies=[rate_limited])
async def login_options(settings: AppSettings, challenges: PasskeyChallenges) -> Options:
    """Options for `navigator.credentials.get()`: no credentials listed, so the authenticator
    offers whichever passkeys it holds for this site; no email is asked for."""
    challenge = await challenges.issue(Ceremony.LOGIN, "")
    return ceremony.authentication_options(settings, challenge, [])


async def _verified(
    body: Answer,
    db: DbSession,
    settings: AppSettings,
    challenges: PasskeyChallenges,
    kind: Ceremony,
    issued_to: str,
    user_id: int | None = None,
) -> store.Stored:
    """The stored passkey that signed this answer, its use recorded; 401 if there is none."""
    try:
        assertion, challenge = ceremony.parse_assertion(body.credential)
    except ceremony.Refused as exc:
        raise HTTPException(400, str(exc)) from None
    if not await challenges.take_for(kind, challenge, issued_to):
        raise HTTPException(400, "challenge unknown, used or expired: ask for new options")
    stored = await store.find(db, assertion.credential_id)
    if stored is None or (user_id is not None and stored.user_id != user_id):
        raise HTTPException(401, NOT_ACCEPTED)
    # A discoverable login names its account by the user handle; it must be the passkey's own.
    if (assertion.user_handle is None and user_id is None) or (
        assertion.user_handle is not None and assertion.user_handle != stored.user_handle
    ):
        raise HTTPException(401, NOT_ACCEPTED)
    try:
        verified = ceremony.verify_assertion(settings, assertion, challenge, stored.public_key)
    except ceremony.Refused:
        raise HTTPException(401, NOT_ACCEPTED) from None
    if not await store.record_use(db, stored, verified):
        await db.rollback()
        raise HTTPException(401, NOT_ACCEPTED)
    return stored


@router.post("/login", status_code=201, dependencies=[rate_limited])
async def log_in(
    body: Answer,
    request: Request,
    response: Response,
    db: DbSession,
    settings: AppSettings,
    challenges: PasskeyChallenges,
    sessions: Sessions,
    cookie: Cookie,
    address: ClientAddress,
) -> SessionOut:
    stored = await _verified(body, db, settings, challenges, Ceremony.LOGIN, "")
    principal = await store.owner(db, stored.user_id)
    if principal is None:  # disabled
        await db.rollback()
        raise HTTPException(401, NOT_ACCEPTED)
    await db.commit()
    # Not counted by the login throttle: there is nothing to guess, and an attack on the
    # password must not lock the owner's passkey out too. The rate limit still applies.
    return await begin_session(principal, request, response, db, sessions, cookie, None, address)


# A passkey as the second factor, after the password (POST /session answered 202).


@router.post("/second-factor/options", dependencies=[rate_limited])
async def second_factor_options(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    challenges: PasskeyChallenges,
    pending: Pending,
    pending_cookie: PendingCookie,
) -> Options:
    """Options for `navigator.credentials.get()` listing the account's passkeys, for the login
    waiting for its second factor (the pending-login cookie)."""
    waiting = await waiting_login(request, pending, pending_cookie)
    allowed = await store.credentials_of(db, waiting.principal.user_id)
    await db.close()
    if not allowed:
        raise HTTPException(409, "this account has no passkey: give a code instead")
    challenge = await challenges.issue(Ceremony.SECOND_FACTOR, waiting.binding)
    return ceremony.authentication_options(settings, challenge, allowed)


@router.post("/second-factor", status_code=201, dependencies=[rate_limited])
async def give_second_factor(
    body: Answer,
    request: Request,
    response: Response,
    db: DbSession,
    settings: AppSettings,
    challenges: PasskeyChallenges,
    sessions: Sessions,
    throttle: LoginThrottle,
    cookie: Cookie,
    address: ClientAddress,
    pending: Pending,
    pending_cookie: PendingCookie,
) -> SessionOut:
    waiting = await waiting_login(request, pending, pending_cookie)
    principal = waiting.principal
    await throttle.attempt(principal.email, address)  # as a wrong code counts (session.py)
    await _verified(
        body,
        db,
        settings,
        challenges,
        Ceremony.SECOND_FACTOR,
        waiting.binding,
        user_id=principal.user_id,
    )
    await waiting.end(response, db)
    return await begin_session(
        principal, request, response, db, sessions, cookie, throttle, address
    )


# The account's passkeys. Declared last: /passkeys/login and /passkeys/second-factor come
# first in /openapi.json, which the 405's `Allow` reads in order (errors.py).


@router.get("")
async def list_passkeys(session: CurrentSession, db: DbSession) -> PasskeyList:
    return PasskeyList(items=[PasskeyOut.of(p) for p in await store.of_user(db, session.user_id)])


@router.patch("/{passkey_id:int}", dependencies=[rate_limited])
async def rename(
    passkey_id: PasskeyId, body: Rename, session: CurrentSession, db: DbSession
) -> PasskeyOut:
    passkey = await store.rename(db, session.user_id, passkey_id, body.name)
    if passkey is None:
        raise HTTPException(404, "no such passkey")
    out = PasskeyOut.of(passkey)
    await db.commit()
    return out


@router.delete("/{passkey_id:int}", status_code=204, dependencies=[rate_limited])
async def remove(
    passkey_id: PasskeyId,
    body: Removal,
    session: CurrentSession,
    db: DbSession,
    hasher: Passwords,
    throttle: LoginThrottle,
    address: ClientAddress,
    changed: SignInChanged,
) -> None:
    await check_current_password(session, body.password, db, hasher, throttle, address)
    if not await store.remove(db, session.user_id, passkey_id):
        await db.rollback()
        raise HTTPException(404, "no such passkey")
    await changed()
