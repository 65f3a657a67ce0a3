"""The dependencies routes ask for, as `Annotated` aliases.

Everything here was made once by the lifespan in app.py and lives in the ASGI lifespan state;
a route names what it needs in its signature instead of reaching for a global.

Each getter is `async def` although it awaits nothing: FastAPI runs a plain `def` dependency in
a thread pool, and that hop cost more than the rest of a session read together.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..core.flags import Flags
from ..core.mfa.pending import PendingLogins
from ..core.mfa.secretbox import SecretBox
from ..core.passkeys.challenges import Challenges
from ..core.passwords import Hasher
from ..core.sessions import Session, SessionStore
from ..core.settings import Settings
from ..core.task_sender import TaskSender
from .cookie import SessionCookie
from .ratelimit import Throttle


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessionmaker() as session:
        yield session


async def _engine(request: Request) -> AsyncEngine:
    return request.state.engine  # type: ignore[no-any-return]


async def _login_check_engine(request: Request) -> AsyncEngine:
    return request.state.login_check_engine  # type: ignore[no-any-return]


async def _redis(request: Request) -> Redis:
    return request.state.redis  # type: ignore[no-any-return]


async def _tasks(request: Request) -> TaskSender:
    return request.state.tasks  # type: ignore[no-any-return]


async def _settings(request: Request) -> Settings:
    return request.state.settings  # type: ignore[no-any-return]


async def _session_store(request: Request) -> SessionStore:
    return request.state.session_store  # type: ignore[no-any-return]


async def _request_id(request: Request) -> str:
    return request.state.request_id  # type: ignore[no-any-return]


async def _hasher(request: Request) -> Hasher:
    return request.state.hasher  # type: ignore[no-any-return]


async def _login_throttle(request: Request) -> Throttle:
    return request.state.login_throttle  # type: ignore[no-any-return]


async def _mail_throttle(request: Request) -> Throttle:
    return request.state.mail_throttle  # type: ignore[no-any-return]


async def _cookie(request: Request) -> SessionCookie:
    return request.state.cookie  # type: ignore[no-any-return]


async def _pending_logins(request: Request) -> PendingLogins:
    return request.state.pending_logins  # type: ignore[no-any-return]


async def _pending_cookie(request: Request) -> SessionCookie:
    return request.state.pending_cookie  # type: ignore[no-any-return]


async def _secretbox(request: Request) -> SecretBox:
    return request.state.secretbox  # type: ignore[no-any-return]


async def _passkey_challenges(request: Request) -> Challenges:
    return request.state.passkey_challenges  # type: ignore[no-any-return]


async def _flags(request: Request) -> Flags:
    return request.state.flags  # type: ignore[no-any-return]


async def _client_address(request: Request) -> str:
    # uvicorn has already taken it from X-Forwarded-For if the peer is a trusted proxy.
    return request.client.host if request.client else "unknown"


DbSession = Annotated[AsyncSession, Depends(_db_session)]
DbEngine = Annotated[AsyncEngine, Depends(_engine)]
LoginCheckEngine = Annotated[AsyncEngine, Depends(_login_check_engine)]
RedisClient = Annotated[Redis, Depends(_redis)]
Tasks = Annotated[TaskSender, Depends(_tasks)]
AppSettings = Annotated[Settings, Depends(_settings)]
Sessions = Annotated[SessionStore, Depends(_session_store)]
RequestId = Annotated[str, Depends(_request_id)]
Passwords = Annotated[Hasher, Depends(_hasher)]
LoginThrottle = Annotated[Throttle, Depends(_login_throttle)]
MailThrottle = Annotated[Throttle, Depends(_mail_throttle)]
Cookie = Annotated[SessionCookie, Depends(_cookie)]
PendingCookie = Annotated[SessionCookie, Depends(_pending_cookie)]
Pending = Annotated[PendingLogins, Depends(_pending_logins)]
MfaSecrets = Annotated[SecretBox, Depends(_secretbox)]
PasskeyChallenges = Annotated[Challenges, Depends(_passkey_challenges)]
ClientAddress = Annotated[str, Depends(_client_address)]
FeatureFlags = Annotated[Flags, Depends(_flags)]


async def _current_session(request: Request) -> Session:
    # Reads the store and the cookie itself rather than through two sub-dependencies: each one
    # is a resolution step for FastAPI on every authenticated request (14% of a session read).
    store: SessionStore = request.state.session_store
    session = await store.load(request.state.cookie.read(request))
    if session is None:
        raise HTTPException(401, "no session", headers={"WWW-Authenticate": "Cookie"})
    return session


CurrentSession = Annotated[Session, Depends(_current_session)]
