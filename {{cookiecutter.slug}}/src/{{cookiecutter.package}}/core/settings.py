"""Factor III, config: every setting comes from the environment, is validated once at start-up,
and a process with bad config stops with a message naming each bad variable.

Field names map to upper-case environment variables (`database_url` is `DATABASE_URL`).
Secrets are `SecretStr`, so neither `repr()` nor an error message can print them.
"""

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

from limits import parse
from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .telemetry import config_problems

EX_CONFIG = 78  # sysexits.h: configuration error


def _url_with_scheme(*schemes: str) -> AfterValidator:
    def check(value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(
                f"must be a URL with a host and one of the schemes {', '.join(schemes)}"
            )
        return value

    return AfterValidator(check)


def _normalise_postgres(value: SecretStr) -> SecretStr:
    # Platforms hand out postgres:// URLs; SQLAlchemy needs the dialect+driver spelled out.
    rest = value.get_secret_value().split("://", 1)[1]
    return SecretStr(f"postgresql+psycopg://{rest}")


def _rate_limit(value: str) -> str:
    try:
        parse(value)
    except ValueError:
        raise ValueError("must look like 60/minute or 10/second") from None
    return value


PostgresUrl = Annotated[
    SecretStr,
    _url_with_scheme("postgres", "postgresql", "postgresql+psycopg"),
    AfterValidator(_normalise_postgres),
]
RedisUrl = Annotated[SecretStr, _url_with_scheme("redis", "rediss")]
BrokerUrl = Annotated[SecretStr, _url_with_scheme("redis", "rediss", "amqp", "amqps")]
Seconds = Annotated[float, Field(gt=0)]


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters (make one: openssl rand -base64 48)")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # Backing services (factor IV): swapped by changing these, never the code.
    database_url: PostgresUrl
    redis_url: RedisUrl
    broker_url: BrokerUrl | None = Field(None, description="Celery broker; REDIS_URL when unset")
    secret_key: Annotated[SecretStr, AfterValidator(_long_enough)] = Field(
        description="signs session cookies"
    )

    # Web process.
    port: int = Field(8000, ge=1, le=65535)
    web_concurrency: int = Field(1, ge=1, le=64)
    shutdown_grace_seconds: int = Field(20, ge=1, description="web drain bound after SIGTERM")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # Timeouts on every network call, so a hung dependency costs seconds, not a stuck process.
    # A fixed pool: overflow connections are opened and closed per burst, which costs more
    # than waiting for a pooled one. Budget: replicas x processes x pool <= max_connections.
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(0, ge=0)
    db_timeout_seconds: Seconds = Field(3, description="connect, pool checkout and statement")
    redis_timeout_seconds: Seconds = 2
    readiness_timeout_seconds: Seconds = Field(2, description="per dependency in /readyz")
    request_timeout_seconds: Seconds = Field(10, description="whole-request deadline, then 503")

    rate_limit: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "60/minute", description="per client address and per session, on the write endpoints"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="proxies trusted for X-Forwarded-For (the client address)"
    )

    # Sessions (factor VI: the process keeps no state; Redis does).
    session_ttl_seconds: int = Field(86_400, ge=60, description="idle lifetime, refreshed on use")
    session_cookie_secure: bool = Field(True, description="send the cookie over HTTPS only")

    # Worker (factor VIII) and clock.
    worker_concurrency: int = Field(2, ge=1)
    worker_max_tasks_per_child: int = Field(
        0, ge=0, description="a pool process is replaced after this many tasks; 0: never"
    )
    worker_metrics_port: int = Field(9101, ge=1, le=65535, description="worker's /metrics port")
    task_queue: str = Field(
        "{{ cookiecutter.package }}", min_length=1, description="lets services share one broker"
    )
    broker_visibility_timeout_seconds: int = Field(
        300, ge=5, description="Redis broker: unacknowledged tasks are redelivered after this"
    )
    task_time_limit_seconds: int = Field(240, ge=1, description="hard limit; below the above")
    task_max_retries: int = Field(5, ge=0)
    task_retry_backoff_seconds: Seconds = Field(2, description="first retry delay, doubled each")
    task_retry_backoff_max_seconds: Seconds = 120
    heartbeat_seconds: Seconds = 60
    clock_lock_timeout_seconds: Seconds = Field(
        30, ge=5, description="a standby clock takes over at most this long after the active dies"
    )
    retention_days: Seconds = Field(7, description="heartbeats and dead letters older are pruned")

    @model_validator(mode="after")
    def _task_waits_below_visibility_timeout(self) -> "Settings":
        # A message unacknowledged for longer than this is handed to a second worker: a task
        # still running, or a retry still waiting out its countdown, would then run twice.
        limit = self.broker_visibility_timeout_seconds
        for name in ("task_time_limit_seconds", "task_retry_backoff_max_seconds"):
            if getattr(self, name) >= limit:
                raise ValueError(f"{name.upper()} must be below BROKER_VISIBILITY_TIMEOUT_SECONDS")
        return self

    @property
    def celery_broker_url(self) -> str:
        return (self.broker_url or self.redis_url).get_secret_value()


def _describe(error: dict[str, object]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]).upper() if isinstance(loc, tuple) and loc else "settings"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{name}: {message}"


def load_settings() -> Settings:
    """Read the environment, or stop the process with one line naming every bad variable."""
    # OTEL_* are the OpenTelemetry SDK's to read; only what this service cannot do is checked.
    problems = config_problems()
    try:
        settings = Settings()  # required fields come from the environment
    except ValidationError as exc:
        # Only `loc` and `msg` are used: pydantic's own text would echo the offending input.
        errors = exc.errors(include_input=False, include_url=False)
        problems = [_describe(dict(e)) for e in errors] + problems
    if problems:
        fail("invalid configuration: " + "; ".join(problems))
    return settings


def fail(event: str) -> NoReturn:
    """Print one JSON log line and exit with EX_CONFIG; used before logging is configured."""
    line = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "critical",
        "logger": __name__,
        "event": event,
    }
    print(json.dumps(line), file=sys.stderr, flush=True)
    sys.exit(EX_CONFIG)
