"""Factor VI, stateless processes: session data lives in Redis, never in the web process.

The cookie carries only a random id and its HMAC signature. An id is accepted only if the
signature matches and Redis holds a record for it, so a client cannot choose its own id
(no session fixation), and a new id is issued at every login.
"""

import base64
import hashlib
import hmac
import secrets
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.responses import Response

COOKIE = "session"
_KEY = "session:{}"


class SessionStore:
    def __init__(self, redis: Redis, secret_key: str, ttl_seconds: int, secure: bool) -> None:
        self._redis = redis
        self._secret = secret_key.encode()
        self._ttl = ttl_seconds
        self._secure = secure

    def _sign(self, session_id: str) -> str:
        mac = hmac.digest(self._secret, session_id.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def session_id(self, cookie: str | None) -> str | None:
        """The id in a correctly signed cookie; None for anything else."""
        session_id, _, signature = (cookie or "").partition(".")
        # Bytes: compare_digest refuses str with non-ASCII characters, which a cookie can hold.
        if session_id and hmac.compare_digest(signature.encode(), self._sign(session_id).encode()):
            return session_id
        return None

    async def load(self, cookie: str | None) -> dict[str, Any] | None:
        """The session's data, its idle TTL restarted; None for a missing, forged or expired one."""
        session_id = self.session_id(cookie)
        if session_id is None:
            return None
        raw = await self._redis.getex(_KEY.format(session_id), ex=self._ttl)
        return orjson.loads(raw) if raw is not None else None

    async def start(self, data: dict[str, Any], response: Response, old_cookie: str | None) -> None:
        """Store `data` under a fresh id, drop the previous session, and set the cookie."""
        session_id = secrets.token_urlsafe(32)
        await self._redis.set(_KEY.format(session_id), orjson.dumps(data), ex=self._ttl)
        await self._forget(old_cookie)
        response.set_cookie(
            COOKIE,
            f"{session_id}.{self._sign(session_id)}",
            max_age=self._ttl,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )

    async def end(self, cookie: str | None, response: Response) -> None:
        """Delete the server-side record, so the cookie is dead wherever a copy of it is."""
        await self._forget(cookie)
        response.delete_cookie(COOKIE, httponly=True, samesite="lax", secure=self._secure)

    async def _forget(self, cookie: str | None) -> None:
        session_id = self.session_id(cookie)
        if session_id is not None:
            await self._redis.delete(_KEY.format(session_id))
