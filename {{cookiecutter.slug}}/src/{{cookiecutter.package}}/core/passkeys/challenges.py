"""The challenges of passkey ceremonies: random, single use, short lived, and for one purpose.

A challenge is its own key. The authenticator signs over the client data, which carries the
challenge, and the browser sends that back; so the answer itself says which challenge it meets,
and no cookie or extra token has to carry it. The key names the ceremony (registration, login,
second factor) and the value says whom it was issued to (a session, a pending login, anyone), so
a challenge from one ceremony is worthless in another, and one issued to someone else is too.

GETDEL takes it out as it is read: a replayed answer, or two concurrent ones, find it gone.
"""

import hashlib
import secrets
from enum import StrEnum

from redis.asyncio import Redis

from ..settings import Settings

CHALLENGE_BYTES = 32  # WebAuthn asks for at least 16 random bytes


class Ceremony(StrEnum):
    REGISTER = "register"
    LOGIN = "login"
    SECOND_FACTOR = "second-factor"


class Challenges:
    def __init__(self, redis: Redis, key_prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self.ttl = ttl_seconds

    def _key(self, ceremony: Ceremony, challenge: bytes) -> str:
        digest = hashlib.sha256(challenge).hexdigest()
        return f"{self._prefix}:passkey-challenge:{ceremony}:{digest}"

    async def issue(self, ceremony: Ceremony, issued_to: str) -> bytes:
        """A new challenge for `ceremony`, to be met only by `issued_to` (empty: by anyone)."""
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        await self._redis.set(self._key(ceremony, challenge), issued_to, ex=self.ttl)
        return challenge

    async def take(self, ceremony: Ceremony, challenge: bytes) -> str | None:
        """Use up the challenge: whom it was issued to, or None if it was not issued for this
        ceremony, or is used or expired. Taken even when the answer then fails: one try each."""
        if not challenge:
            return None
        value = await self._redis.getdel(self._key(ceremony, challenge))
        return value.decode() if isinstance(value, bytes) else value

    async def take_for(self, ceremony: Ceremony, challenge: bytes, issued_to: str) -> bool:
        """Use up the challenge; whether it was this ceremony's, issued to `issued_to`."""
        value = await self.take(ceremony, challenge)
        return value is not None and secrets.compare_digest(value.encode(), issued_to.encode())


def create_challenges(settings: Settings, redis: Redis) -> Challenges:
    return Challenges(redis, settings.redis_key_prefix, settings.webauthn_challenge_seconds)
