"""A login that gave the right password and still owes its second factor.

It is kept in Redis under the digest of a random token for `MFA_PENDING_SECONDS`; the token
travels in a cookie of its own that only the second-factor step reads, so it is no session and
opens nothing else. The step that completes it deletes it: one pending login, one session.
"""

import hashlib
import secrets
from dataclasses import asdict
from datetime import datetime

import orjson
from redis.asyncio import Redis

from ..accounts import Principal
from ..settings import Settings


class PendingLogins:
    def __init__(self, redis: Redis, key_prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self.ttl = ttl_seconds

    def _key(self, token: str) -> str:
        return f"{self._prefix}:login-pending:{hashlib.sha256(token.encode()).hexdigest()}"

    async def begin(self, principal: Principal) -> str:
        """A pending login; the token for its cookie."""
        token = secrets.token_urlsafe(32)
        await self._redis.set(self._key(token), orjson.dumps(asdict(principal)), ex=self.ttl)
        return token

    async def get(self, token: str | None) -> Principal | None:
        """Whose login the token is waiting for; None when there is none."""
        raw = await self._redis.get(self._key(token)) if token else None
        if raw is None:
            return None
        record = orjson.loads(raw)
        record["password_changed_at"] = datetime.fromisoformat(record["password_changed_at"])
        return Principal(**record)

    async def finish(self, token: str) -> bool:
        """Delete it; False if it was already gone (finished by a concurrent request, expired)."""
        return bool(await self._redis.delete(self._key(token)))


def create_pending_logins(settings: Settings, redis: Redis) -> PendingLogins:
    return PendingLogins(redis, settings.redis_key_prefix, settings.mfa_pending_seconds)
