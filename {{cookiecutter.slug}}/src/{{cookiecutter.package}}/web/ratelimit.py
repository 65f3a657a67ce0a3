"""Abuse control: the write endpoints are rate limited in Redis, shared by every web process.

Two counters apply to each request, one per client address and one per session: rotating
cookies does not escape the first, and sharing a session across addresses does not escape the
second. Over the limit, the answer is 429 with Retry-After.
"""

import math
import time

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from ..core.settings import Settings
from .deps import SessionCookie, Sessions


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
    # The app's own Redis connection pool: its timeouts, and closed with it at shutdown.
    storage = RedisStorage(
        settings.redis_url.get_secret_value(),
        implementation="redispy",
        key_prefix="ratelimit",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )
    return RateLimiter(storage, parse(settings.rate_limit))


async def _enforce(request: Request, store: Sessions, cookie: SessionCookie = None) -> None:
    limiter: RateLimiter = request.state.rate_limiter
    keys = [f"addr:{request.client.host if request.client else 'unknown'}"]
    if session_id := store.session_id(cookie):
        keys.append(f"session:{session_id}")
    wait = await limiter.retry_after(*keys)
    if wait is not None:
        raise HTTPException(429, "too many requests", headers={"Retry-After": str(wait)})


# For a route's `dependencies=[...]`: it has no value, only an effect.
rate_limited = Depends(_enforce)
