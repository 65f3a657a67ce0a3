"""Abuse control, in Redis, so every web process shares the counts.

The write endpoints: two counters apply to each request, one per client address and one per
session, so rotating cookies does not escape the first and sharing a session across addresses
does not escape the second.

Logins: every attempt is counted, per account and per client address, before its password is
hashed, in one atomic step in Redis that refuses it if either count is at its limit. So N
guesses sent at once cost at most the limit in password checks, not N (counting only failures,
after the check, let 30 concurrent guesses through 16 checks against a limit of 5). A
successful login gives its attempt back: the account's count is cleared and the address's
lowered by one. The windows are fixed and refused attempts are not counted, so a lock ends
when its window does, and whoever fails on purpose cannot keep an account locked for longer.

A client address is the one uvicorn took from X-Forwarded-For, reading from the right past the
proxies in FORWARDED_ALLOW_IPS (web/server.py), so a client cannot choose it by writing the
left end. An IPv6 client owns a whole /64 (RATE_LIMIT_IPV6_PREFIX), and is counted as one.

Mails asked for (a password reset, a new verification link) are counted the same way, per
address asked about and per client address, and never given back: each one sends a mail.

Over a limit, the answer is 429 with Retry-After.
"""

import hashlib
import ipaddress
import math
import time
from functools import lru_cache

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis

from ..core.settings import Settings


def _storage(settings: Settings, redis: Redis) -> RedisStorage:
    # The app's own Redis connection pool: its timeouts, and closed with it at shutdown.
    return RedisStorage(
        settings.redis_url.get_secret_value(),
        implementation="redispy",
        key_prefix=f"{settings.redis_key_prefix}:ratelimit",
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )


@lru_cache(maxsize=4096)
def client_key(host: str, ipv6_prefix: int) -> str:
    """What a client address is counted as: itself, or for IPv6 its network of that length."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a unix socket, "unknown"): counted as itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:203.0.113.7 is 203.0.113.7
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


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
    host = request.client.host if request.client else "unknown"
    keys = [f"addr:{client_key(host, request.state.settings.rate_limit_ipv6_prefix)}"]
    cookie = request.state.cookie.read(request)
    if session_id := request.state.session_store.session_id(cookie):
        keys.append(f"session:{session_id}")
    wait = await limiter.retry_after(*keys)
    if wait is not None:
        raise too_many(wait)


# For a route's `dependencies=[...]`: it has no value, only an effect.
rate_limited = Depends(_enforce)


# KEYS: the account's and the address's counters. ARGV: each one's limit and window (seconds).
# Both counts are checked, then both raised, in one step: concurrent attempts cannot all pass
# a check that none of them has counted in yet. Returns 0, or the seconds until a window ends.
_ATTEMPT = """
for i = 1, 2 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[2 * i - 1]) then
    return math.max(redis.call('TTL', KEYS[i]), 1)
  end
end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return 0
"""

# A successful login: the account starts afresh, the address gets its attempt back.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


class Throttle:
    """Counts attempts per account and per client address (see the module's docstring): password
    checks (`login`), and mails asked for (`mail`: password resets, new verification links)."""

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        per_account: RateLimitItem,
        per_address: RateLimitItem,
        ipv6_prefix: int,
    ) -> None:
        self._prefix = key_prefix  # REDIS_KEY_PREFIX and what is counted: "<prefix>:login"
        # The limits are part of the keys, as the `limits` package does: a changed limit starts
        # its own counts rather than inheriting counts made under another.
        self._tags = [
            f"{limit.amount}/{limit.get_expiry()}" for limit in (per_account, per_address)
        ]
        self._limits = [
            arg
            for limit in (per_account, per_address)
            for arg in (limit.amount, limit.get_expiry())
        ]
        self._ipv6_prefix = ipv6_prefix
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)

    def _keys(self, email: str, address: str) -> list[str]:
        # A digest rather than the address itself: no email addresses in Redis key names.
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        client = client_key(address, self._ipv6_prefix)
        account_tag, address_tag = self._tags
        return [
            f"{self._prefix}-account:{account_tag}:{account}",
            f"{self._prefix}-addr:{address_tag}:{client}",
        ]

    async def attempt(self, email: str, address: str) -> None:
        """Count one attempt against both limits, or raise 429 if either is reached."""
        wait = int(await self._attempt(keys=self._keys(email, address), args=self._limits))
        if wait:
            raise too_many(wait)

    async def succeeded(self, email: str, address: str) -> None:
        await self._succeeded(keys=self._keys(email, address))


def _throttle(
    settings: Settings, redis: Redis, counted: str, per_account: str, per_address: str
) -> Throttle:
    return Throttle(
        redis,
        f"{settings.redis_key_prefix}:{counted}",
        parse(per_account),
        parse(per_address),
        settings.rate_limit_ipv6_prefix,
    )


def create_login_throttle(settings: Settings, redis: Redis) -> Throttle:
    return _throttle(
        settings,
        redis,
        "login",
        settings.login_failures_per_account,
        settings.login_failures_per_address,
    )


def create_mail_throttle(settings: Settings, redis: Redis) -> Throttle:
    return _throttle(
        settings,
        redis,
        "mail",
        settings.mail_requests_per_account,
        settings.mail_requests_per_address,
    )
