"""Factor IV, backing services: Redis (sessions, rate limits, locks) is reached only through a
client built from config, with its timeouts, so a hung Redis costs seconds, not a stuck process."""

from redis.asyncio import Redis

from .settings import Settings


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
