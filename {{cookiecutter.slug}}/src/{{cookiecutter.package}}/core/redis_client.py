"""Factor IV, backing services: Redis (sessions, rate limits, locks) is reached only through a
client built from config, with its timeouts, so a hung Redis costs seconds, not a stuck process.
With REDIS_URL_FILE, each new connection authenticates with the password the file holds then."""

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from .credentials import redis_credentials, without_credentials
from .secret_files import file_variable
from .settings import Settings


def redis_options(settings: Settings, field: str = "redis_url") -> tuple[str, dict[str, Any]]:
    """The URL and client options for the Redis URL setting `field`, with the credential
    provider that re-reads its file where it came from one (then the URL carries none)."""
    url = str(getattr(settings, field).get_secret_value())
    provider = redis_credentials(url, file_variable(field), settings.secret_file(field))
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if provider is None:
        return url, options
    return without_credentials(url), {**options, "credential_provider": provider}


def create_redis(settings: Settings) -> Redis:
    url, options = redis_options(settings)
    # A pooled connection the server has closed (a restart, a failover, CLIENT KILL after a
    # password rotation) is only found when a command is sent on it, and from_url's clients
    # retry nothing: that request would get a 503. Once, at once, on a new connection. A
    # timeout is not retried: a Redis that hangs would cost each request twice the timeout.
    once = Retry(NoBackoff(), retries=1, supported_errors=(ConnectionError,))
    return Redis.from_url(url, retry=once, **options)
