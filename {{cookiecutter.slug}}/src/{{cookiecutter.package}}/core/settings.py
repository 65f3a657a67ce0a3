"""Factor III, config: every setting comes from the environment, is validated once at start-up,
and a process with bad config stops with a message naming each bad variable.

Field names map to upper-case environment variables (`database_url` is `DATABASE_URL`).
Secrets are `SecretStr`, so neither `repr()` nor an error message can print them.
"""

import ipaddress
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

from limits import parse
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .cpus import usable_cpus
from .logging import utc_timestamp
from .telemetry import config_problems

EX_CONFIG = 78  # sysexits.h: configuration error
FLAG_PREFIX = "FLAG_"  # FLAG_NOTE_SUMMARY=on sets the feature flag `note-summary` (core/flags.py)
FLAG_VALUES = {"on": True, "off": False, "true": True, "false": False}


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
        raise ValueError("must look like 60/minute, 10/second or 5/5 minutes") from None
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


def _comma_separated(value: object) -> object:
    # A list in one variable, the way platforms and shells can write it: "a,b,c".
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError("must be origins like https://app.example.com, comma-separated")
    return f"{parts.scheme}://{parts.netloc}"


def _proxies(value: str) -> str:
    # uvicorn would take "*" to mean "trust every peer" and then read the client address from
    # the left end of X-Forwarded-For, which the client writes: any address it likes.
    for item in (part.strip() for part in value.split(",")):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                "must be the addresses or networks of your proxies, comma-separated "
                "(e.g. 10.0.0.0/8); '*' would let clients choose their own address"
            ) from None
    return value


SecretKey = Annotated[SecretStr, AfterValidator(_long_enough)]
SecretKeys = Annotated[tuple[SecretKey, ...], NoDecode, BeforeValidator(_comma_separated)]
Origin = Annotated[str, AfterValidator(_origin)]
Origins = Annotated[tuple[Origin, ...], NoDecode, BeforeValidator(_comma_separated)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # Backing services (factor IV): swapped by changing these, never the code.
    database_url: PostgresUrl
    redis_url: RedisUrl
    broker_url: BrokerUrl | None = Field(None, description="Celery broker; REDIS_URL when unset")
    secret_key: SecretKey = Field(description="signs session cookies")
    secret_key_fallbacks: SecretKeys = Field(
        (), description="previous keys, comma-separated: their cookies stay valid (rotation)"
    )

    # Web process.
    port: int = Field(8000, ge=1, le=65535)
    web_concurrency: int = Field(1, ge=1, le=64)
    shutdown_grace_seconds: int = Field(20, ge=1, description="web drain bound after SIGTERM")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # What one request may make the web process hold in memory before the app sees it.
    max_request_body_bytes: int = Field(
        1_048_576, ge=1, description="a larger body is refused with 413 before it is read"
    )
    max_request_head_bytes: int = Field(
        32_768, ge=1024, description="request line and headers; larger is refused with 414/431"
    )

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
    forwarded_allow_ips: Annotated[str, AfterValidator(_proxies)] = Field(
        "127.0.0.1",
        description="addresses or networks of the proxies in front: X-Forwarded-For is read "
        "from the right past them, so the client address is the one the last of them saw",
    )
    rate_limit_ipv6_prefix: int = Field(
        64, ge=32, le=128, description="an IPv6 client is limited as its whole network this long"
    )
    redis_key_prefix: str = Field(
        "{{ cookiecutter.package }}",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="starts every Redis key this service writes: services can share one Redis",
    )

    # Sessions (factor VI: the process keeps no state; Redis does).
    session_ttl_seconds: int = Field(86_400, ge=60, description="idle lifetime, refreshed on use")
    session_max_age_seconds: int = Field(
        604_800, ge=60, description="absolute lifetime: a session ends then, however active"
    )
    session_cookie_secure: bool = Field(
        True, description="HTTPS only; the cookie is then named __Host-session"
    )
    trusted_origins: Origins = Field(
        (), description="other sites allowed to send unsafe requests, comma-separated"
    )

    # Accounts. Password rules follow OWASP ASVS 5 (V6); hashing is argon2id.
    password_min_length: int = Field(
        12, ge=10, description="at least 10: the common-password list starts there"
    )
    password_max_bytes: int = Field(
        1024, ge=256, le=4096, description="checked before hashing; 64 characters always fit"
    )
    password_hash_memory_kib: int = Field(19_456, ge=19_456, description="argon2id m (OWASP min)")
    password_hash_time_cost: int = Field(2, ge=2, description="argon2id t (OWASP minimum)")
    password_hash_parallelism: int = Field(1, ge=1, le=16, description="argon2id p")
    password_hash_concurrency: int = Field(
        default_factory=usable_cpus,
        ge=1,
        description="hashes at once per web process (each holds its memory); default: the CPUs "
        "the process may really use (a container's CPU limit, not the host's cores)",
    )
    login_failures_per_account: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "5/5 minutes", description="failed logins per account, then 429 until the window ends"
    )
    login_failures_per_address: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "10/minute", description="failed logins per client address, then 429"
    )

    # Worker (factor VIII) and clock.
    worker_concurrency: int = Field(2, ge=1)
    worker_max_tasks_per_child: int = Field(
        0, ge=0, description="a pool process is replaced after this many tasks; 0: never"
    )
    worker_metrics_port: int = Field(
        9101, ge=1, le=65535, description="the first port a worker tries for its /metrics"
    )
    worker_metrics_ports: int = Field(
        10, ge=1, le=1000, description="how many ports from WORKER_METRICS_PORT workers may take"
    )
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

    # Feature flags (core/flags.py): FLAG_<NAME>=on|off, then this file, then the code's default.
    flags_file: Path | None = Field(
        None, description="flag file in flagd's JSON format, re-read while the process runs"
    )
    flags_reload_seconds: Seconds = Field(
        5, description="how often the flag file is checked: the bound on a change taking effect"
    )
    _env_flags: dict[str, bool] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_env_flags(self) -> "Settings":
        # A family of variables rather than one field: FLAG_<NAME>, one per flag the
        # environment pins. Read here so that a bad value stops the process like any setting.
        flags, bad = {}, []
        for name, value in os.environ.items():
            if name.startswith(FLAG_PREFIX):
                if value.strip().lower() not in FLAG_VALUES:
                    bad.append(name)
                    continue
                key = name.removeprefix(FLAG_PREFIX).lower().replace("_", "-")
                flags[key] = FLAG_VALUES[value.strip().lower()]
        if bad:
            raise ValueError(f"{', '.join(sorted(bad))} must be on or off")
        self._env_flags = flags
        return self

    @property
    def env_flags(self) -> Mapping[str, bool]:
        """The flags FLAG_<NAME> variables set, by flag key: FLAG_NOTE_SUMMARY is `note-summary`."""
        return self._env_flags

    @model_validator(mode="after")
    def _task_waits_below_visibility_timeout(self) -> "Settings":
        # A message unacknowledged for longer than this is handed to a second worker: a task
        # still running, or a retry still waiting out its countdown, would then run twice.
        limit = self.broker_visibility_timeout_seconds
        for name in ("task_time_limit_seconds", "task_retry_backoff_max_seconds"):
            if getattr(self, name) >= limit:
                raise ValueError(f"{name.upper()} must be below BROKER_VISIBILITY_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _idle_within_absolute_lifetime(self) -> "Settings":
        if self.session_ttl_seconds > self.session_max_age_seconds:
            raise ValueError("SESSION_TTL_SECONDS must not exceed SESSION_MAX_AGE_SECONDS")
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


def fail(event: str, status: int = EX_CONFIG) -> NoReturn:
    """Print one JSON log line and exit with `status`; used before logging is configured."""
    line = {
        "timestamp": utc_timestamp(),
        "level": "critical",
        "logger": __name__,
        "event": event,
    }
    print(json.dumps(line), file=sys.stderr, flush=True)
    sys.exit(status)
