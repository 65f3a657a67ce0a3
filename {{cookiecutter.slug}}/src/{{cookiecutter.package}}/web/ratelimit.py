"""Abuse control, in Redis, so every web process shares the counts.

The write endpoints: two counters apply to each request, one per client address and one per
session, so rotating cookies does not escape the first and sharing a session across addresses
does not escape the second.

Logins: failed attempts are counted per account and per client address, and checked before any
password is hashed, so a guessing run costs the server nothing once it is over the limit. The
windows are fixed: refused attempts are not counted, so a lock ends when its window does, and
whoever fails on purpose cannot keep an account locked for longer than that. A successful
login clears its account's count.

Over a limit, the answer is 429 with Retry-After.
"""

import hashlib
import math
import time

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from ..core.settings import Settings


def _storage(settings: Settings, redis: Redis) -> RedisStorage:
    # The app's own Redis connection pool: its timeouts, and closed with it at shutdown.
    return RedisStorage(
        settings.redis_url.get_secret_value(),
        implementation="redispy",
        key_prefix="ratelimit",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


def too_many(seconds: int) -> HTTPException:
    return HTTPException(429, "too many requests", headers={"Retry-After": str(seconds)})


class RateLimiter:
    def __init__(self, storage: RedisStorage, limit: RateLimitItem) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._limit = limit

    async def retry_after(self, *keys: str) -> int | None:
        """Count one hit against each key; the seconds to wait if any is over its limit."""
        for key in keys:
            if not await self._limiter.hit(self._limit, key):
                stats = await self._limiter.get_window_stats(self._limit, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


def create_rate_limiter(settings: Settings, redis: Redis) -> RateLimiter:
    return RateLimiter(_storage(settings, redis), parse(settings.rate_limit))


async def _enforce(request: Request) -> None:
    limiter: RateLimiter = request.state.rate_limiter
    keys = [f"addr:{request.client.host if request.client else 'unknown'}"]
    cookie = request.state.cookie.read(request)
    if session_id := request.state.session_store.session_id(cookie):
        keys.append(f"session:{session_id}")
    wait = await limiter.retry_after(*keys)
    if wait is not None:
        raise too_many(wait)


# For a route's `dependencies=[...]`: it has no value, only an effect.
rate_limited = Depends(_enforce)


class LoginThrottle:
    def __init__(
        self, storage: RedisStorage, per_account: RateLimitItem, per_address: RateLimitItem
    ) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._limits = (per_account, per_address)

    @staticmethod
    def _keys(email: str, address: str) -> tuple[str, str]:
        # A digest rather than the address itself: no email addresses in Redis key names.
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return f"login-account:{account}", f"login-addr:{address}"

    async def check(self, email: str, address: str) -> None:
        """Raise 429 if either count is at its limit; counts nothing."""
        for limit, key in zip(self._limits, self._keys(email, address), strict=True):
            if not await self._limiter.test(limit, key):
                stats = await self._limiter.get_window_stats(limit, key)
                raise too_many(max(1, math.ceil(stats.reset_time - time.time())))

    async def failed(self, email: str, address: str) -> None:
        for limit, key in zip(self._limits, self._keys(email, address), strict=True):
            await self._limiter.hit(limit, key)

    async def succeeded(self, email: str) -> None:
        account_key, _ = self._keys(email, "")
        await self._limiter.clear(self._limits[0], account_key)


def create_login_throttle(settings: Settings, redis: Redis) -> LoginThrottle:
    return LoginThrottle(
        _storage(settings, redis),
        parse(settings.login_failures_per_account),
        parse(settings.login_failures_per_address),
    )
