"""Factor VI, stateless processes: session data lives in Redis, never in the web process.

The cookie carries only a random 256-bit id and its HMAC signature. An id is accepted only if
the signature matches (the current SECRET_KEY or one of SECRET_KEY_FALLBACKS) and Redis holds a
record for it, so a client cannot choose its own id, and a new id is issued at every login.

Redis keys (each starts with REDIS_KEY_PREFIX, so services can share one Redis):
- `session:<id>`: the session as JSON. It expires after SESSION_TTL_SECONDS without use, and at
  the latest when its absolute lifetime (`expires_at`) ends.
- `user-sessions:<user id>`: a hash from each session's public handle to its id, so listing or
  ending a user's sessions reads one key instead of scanning them all. The public handle is what
  the API shows: the id itself never leaves the cookie.
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import orjson
from redis.asyncio import Redis

from .settings import Settings

LAST_USED_GRANULARITY = 60  # seconds: `last_used_at` is rewritten at most once a minute

# One round trip per authenticated request: read the session, end it if past its absolute
# lifetime (or written in a shape this code does not know, by an older release), else restart
# its idle timer (never beyond that lifetime), and once a minute note when it was last used.
# A script, so that all of this is one atomic step in Redis.
_TOUCH = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, session = pcall(cjson.decode, raw)
local now = tonumber(ARGV[1])
if not ok or type(session) ~= 'table' or type(session.expires_at) ~= 'number'
    or type(session.last_used_at) ~= 'number' or session.expires_at <= now then
  redis.call('DEL', KEYS[1])
  return false
end
local left = session.expires_at - now
local ttl_ms = math.ceil(math.min(tonumber(ARGV[2]), left) * 1000)
if now - session.last_used_at >= tonumber(ARGV[3]) then
  session.last_used_at = now
  raw = cjson.encode(session)
  redis.call('SET', KEYS[1], raw, 'PX', ttl_ms)
else
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
return raw
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: bytes | str) -> "Session | None":
    try:
        return Session(**orjson.loads(raw))
    except TypeError:  # fields of another release's sessions: treated as no session
        return None


@dataclass(frozen=True, slots=True)
class Session:
    handle: str  # public: shown by the API, useless as a cookie
    user_id: int
    email: str
    is_admin: bool
    created_at: float
    expires_at: float
    last_used_at: float
    user_agent: str


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        secret_keys: Sequence[str],
        idle_seconds: int,
        max_age_seconds: int,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._signing_key = secret_keys[0].encode()
        # Newest first: a cookie signed by the current key is checked with one HMAC.
        self._keys = [key.encode() for key in secret_keys]
        self._idle = idle_seconds
        self.max_age = max_age_seconds
        self._touch = redis.register_script(_TOUCH)

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def _index_key(self, user_id: int) -> str:
        return f"{self._prefix}:user-sessions:{user_id}"

    @staticmethod
    def _mac(key: bytes, session_id: str) -> str:
        mac = hmac.digest(key, session_id.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def cookie_value(self, session_id: str) -> str:
        return f"{session_id}.{self._mac(self._signing_key, session_id)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The id in a correctly signed cookie; None for anything else."""
        session_id, _, signature = (cookie or "").partition(".")
        if not session_id:
            return None
        # Bytes: compare_digest refuses str with non-ASCII characters, which a cookie can hold.
        for key in self._keys:
            if hmac.compare_digest(signature.encode(), self._mac(key, session_id).encode()):
                return session_id
        return None

    async def load(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, its idle timer restarted; None for anything else."""
        session_id = self.session_id(cookie)
        if session_id is None:
            return None
        raw = await self._touch(
            keys=[self._session_key(session_id)],
            args=[time.time(), self._idle, LAST_USED_GRANULARITY],
        )
        return _parse(raw) if raw else None

    async def start(
        self, user_id: int, email: str, is_admin: bool, user_agent: str, old_cookie: str | None
    ) -> tuple[Session, str]:
        """A new session under a fresh id (the previous one, if any, ends); and its cookie."""
        now = time.time()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            handle=secrets.token_urlsafe(12),
            user_id=user_id,
            email=email,
            is_admin=is_admin,
            created_at=now,
            expires_at=now + self.max_age,
            last_used_at=now,
            user_agent=user_agent[:200],
        )
        index = self._index_key(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._session_key(session_id), orjson.dumps(asdict(session)), ex=self._idle)
            pipe.hset(index, session.handle, session_id)
            pipe.expire(index, self.max_age)  # outlives every session it lists
            await pipe.execute()
        if (old := await self.load(old_cookie)) is not None:
            await self.end(old.user_id, old.handle)
        return session, self.cookie_value(session_id)

    async def _session_ids(self, user_id: int) -> dict[str, str]:
        """Handle to session id, for each session the user's index still lists."""
        index = await self._redis.hgetall(self._index_key(user_id))
        return {_text(handle): _text(session_id) for handle, session_id in index.items()}

    async def of_user(self, user_id: int) -> list[Session]:
        """The user's live sessions, oldest first; handles of expired ones are dropped."""
        session_ids = await self._session_ids(user_id)
        if not session_ids:
            return []
        records = await self._redis.mget([self._session_key(sid) for sid in session_ids.values()])
        now = time.time()
        parsed = [_parse(raw) for raw in records if raw is not None]
        live = [session for session in parsed if session and session.expires_at > now]
        if dead := session_ids.keys() - {session.handle for session in live}:
            await self._redis.hdel(self._index_key(user_id), *dead)
        return sorted(live, key=lambda session: session.created_at)

    async def end(self, user_id: int, handle: str) -> bool:
        """End one of the user's sessions; False if it has none with that handle."""
        index = self._index_key(user_id)
        session_id = await self._redis.hget(index, handle)
        if session_id is None:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._session_key(_text(session_id)))
            pipe.hdel(index, handle)
            await pipe.execute()
        return True

    async def end_all(self, user_id: int, keep: str | None = None) -> int:
        """End every session of the user except the one with handle `keep`; how many ended."""
        session_ids = await self._session_ids(user_id)
        doomed = {handle: sid for handle, sid in session_ids.items() if handle != keep}
        if doomed:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(self._session_key(sid) for sid in doomed.values()))
                pipe.hdel(self._index_key(user_id), *doomed)
                await pipe.execute()
        return len(doomed)


def create_session_store(settings: Settings, redis: Redis) -> SessionStore:
    keys = [settings.secret_key, *settings.secret_key_fallbacks]
    return SessionStore(
        redis,
        settings.redis_key_prefix,
        [key.get_secret_value() for key in keys],
        settings.session_ttl_seconds,
        settings.session_max_age_seconds,
    )
