"""What every connection to the broker is made with, whether Celery makes it (broker.py: the
worker, the clock, the admin commands, and web with tracing on) or kombu alone
(kombu_sender.py: web with tracing off). Imports neither, so either can use it.
"""

from typing import Any

from redis.credentials import CredentialProvider

from .credentials import redis_credentials
from .secret_files import file_variable
from .settings import Settings

# The header every message gets when it is published: `jobs queues` reports the age of the
# oldest waiting message from it. Neither broker stamps a time on a message by itself.
SENT_AT = "sent_at"

# Publishing from a request gives up quickly; the clock's sweep catches what is missed.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


def transport_options(settings: Settings) -> dict[str, Any]:
    timeout = settings.redis_timeout_seconds
    return {
        "visibility_timeout": settings.broker_visibility_timeout_seconds,
        # kombu sweeps for messages past their visibility timeout only every interval x
        # throttle seconds (100 s by default): sweep every tenth of the timeout instead, so a
        # lost worker's tasks return within about 1.1 x the visibility timeout.
        "unacked_restore_interval": max(1, settings.broker_visibility_timeout_seconds // 10),
        "unacked_restore_throttle": 1,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # Redis broker: kombu's own keys (bindings, the unacknowledged set) under this
        # service's prefix, so services sharing one Redis never restore each other's tasks.
        "global_keyprefix": f"{settings.redis_key_prefix}:",
    }


def broker_credentials(settings: Settings) -> CredentialProvider | None:
    """A Redis broker URL's password read again at each new connection, when it comes from a
    file (BROKER_URL_FILE, or REDIS_URL_FILE when it is the broker); else None."""
    field = "broker_url" if settings.broker_url is not None else "redis_url"
    return redis_credentials(
        settings.celery_broker_url, file_variable(field), settings.secret_file(field)
    )
