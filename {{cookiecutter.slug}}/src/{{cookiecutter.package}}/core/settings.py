"""Factor III, config: every setting comes from the environment, is validated once at start-up,
and a process with bad config stops with a message naming each bad variable.

Field names map to upper-case environment variables (`database_url` is `DATABASE_URL`).
Secrets are `SecretStr`, so neither `repr()` nor an error message can print them. Each of them
may instead come from a file, `NAME_FILE=/path` (see secret_files.py): a field typed `SecretStr`
gets that variable with nothing more to write.
"""

import ipaddress
import json
import os
import re
import sys
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .cpus import usable_cpus
from .logging import utc_timestamp
from .secret_files import SecretFiles, secret_fields, secret_file_paths
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


# One limit in the notation of the `limits` package, which web/ratelimit.py parses them with:
# "60/minute", "10 per second", "5/5 minutes". Checked here by that grammar, not by importing
# `limits`: it loads every storage it supports, a few hundredths of a second of CPU at the start
# of every process, and only web limits anything. tests/test_settings.py holds the two to the
# same answers. (Several limits, "5/minute;100/day", `limits` would cut to the first: refused.)
_RATE_LIMIT = re.compile(
    r"\s*[0-9]+\s*(/|\s*per\s*)\s*[0-9]*\s*(second|minute|hour|day|month|year)s?\s*", re.IGNORECASE
)


def _rate_limit(value: str) -> str:
    if not _RATE_LIMIT.fullmatch(value):
        raise ValueError("must look like 60/minute, 10/second or 5/5 minutes")
    return value


PostgresUrl = Annotated[
    SecretStr,
    _url_with_scheme("postgres", "postgresql", "postgresql+psycopg"),
    AfterValidator(_normalise_postgres),
]
RedisUrl = Annotated[SecretStr, _url_with_scheme("redis", "rediss")]
BrokerUrl = Annotated[SecretStr, _url_with_scheme("redis", "rediss", "amqp", "amqps")]
SmtpUrl = Annotated[SecretStr, _url_with_scheme("smtp", "smtps")]
Seconds = Annotated[float, Field(gt=0)]


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters (make one: openssl rand -base64 48)")
    return value


def _comma_separated(value: object) -> object:
    # A list in one variable, the way platforms and shells can write it: "a,b,c"; from a file
    # (NAME_FILE), one item a line works as well.
    if isinstance(value, str):
        return [item.strip() for item in re.split(r"[,\n]", value) if item.strip()]
    return value


def _origin(value: str) -> str:
    # Compared byte for byte with the Origin header browsers send (web/cors.py, web/csrf.py):
    # scheme://host[:port], lower case, without a default port. Written that way here, so that
    # "https://App.example.com:443/" still matches, and anything that is not one origin stops.
    if "*" in value or value == "null":
        raise ValueError("must list exact origins: no wildcard and no null (credentials are sent)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        port = -1
    if (
        port == -1
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError("must be origins like https://app.example.com, comma-separated")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


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


def _mail_address(value: str) -> str:
    # "Shop <no-reply@shop.example>" or a bare address; never a header of its own.
    if "\r" in value or "\n" in value or "@" not in parseaddr(value)[1]:
        raise ValueError("must be an address, optionally with a name: Shop <no-reply@shop.example>")
    return value


def _public_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be the http(s) URL of the front end, e.g. https://app.example.com")
    return value.rstrip("/")


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
    mfa_encryption_key: SecretKey | None = Field(
        None,
        description="encrypts TOTP secrets at rest. Unset: a key derived from SECRET_KEY (and "
        "its fallbacks); set one in production, so that SECRET_KEY can rotate alone",
    )
    mfa_encryption_key_fallbacks: SecretKeys = Field(
        (),
        description="previous keys, comma-separated: secrets they encrypted still open, and "
        "are encrypted again with the current key at their next use (rotation)",
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
    # `release` only (core/migrations/env.py): a migration may rewrite a big table, and a second
    # release waits its turn instead of failing.
    release_statement_timeout_seconds: Seconds = Field(
        600, description="release: the longest one migration statement may run"
    )
    release_lock_timeout_seconds: Seconds = Field(
        10, description="release: how long a statement waits for a table lock (traffic queues)"
    )
    release_wait_seconds: Seconds = Field(
        600, description="release: how long it waits for another release to finish migrating"
    )
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

    # Browser security (web/headers.py, web/cors.py, web/csrf.py, web/docs.py).
    cors_origins: Origins = Field(
        (),
        description="exact origins of browser front ends that may call the API with the session "
        "cookie, comma-separated; the same list the cross-site check trusts. Empty: no CORS",
    )
    cors_max_age_seconds: int = Field(
        600, ge=0, le=86_400, description="how long a browser may cache a preflight's answer"
    )
    api_docs: bool = Field(
        False, description="serve Swagger UI at /docs (under its own CSP); /openapi.json always"
    )

    @model_validator(mode="after")
    def _trusted_origins_renamed(self) -> "Settings":
        # One list for CORS and the cross-site check: an old TRUSTED_ORIGINS left set would
        # silently stop being trusted, so it stops the process instead.
        if "TRUSTED_ORIGINS" in os.environ:
            raise ValueError("TRUSTED_ORIGINS is now CORS_ORIGINS (one list for CORS and CSRF)")
        return self

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

    # A second factor (core/mfa/): TOTP, recovery codes and passkeys.
    mfa_pending_seconds: int = Field(
        300,
        ge=30,
        le=900,
        description="how long a login that passed its password may take to "
        "give its second factor, before the password is asked again",
    )
    mfa_issuer: str = Field(
        {{ cookiecutter.project_name | jsonify }},
        min_length=1,
        max_length=64,
        description="the name authenticator apps show beside the account",
    )

    # Passkeys (core/passkeys/): where the browser may use them. The RP ID is the domain a
    # passkey is bound to; the browser refuses one registered elsewhere, and the service refuses
    # an answer signed for another RP ID or collected on another origin.
    webauthn_rp_id: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="the domain passkeys are bound to: the front end's host or a parent domain "
        "of it. Default: PUBLIC_URL's host",
    )
    webauthn_rp_name: str = Field(
        {{ cookiecutter.project_name | jsonify }},
        min_length=1,
        max_length=64,
        description="the name a browser shows when it asks to create or use a passkey",
    )
    webauthn_origins: Origins = Field(
        (),
        description="origins of the pages where passkeys are created and used, comma-separated. "
        "Default: PUBLIC_URL's origin",
    )
    webauthn_challenge_seconds: int = Field(
        300,
        ge=30,
        le=600,
        description="how long a passkey ceremony may take, from its options to its answer",
    )

    # Mail (factor IV: a backing service like the database, swapped by changing SMTP_URL).
    smtp_url: SmtpUrl = Field(
        SecretStr("smtp://127.0.0.1:1025"),
        description="smtp:// (STARTTLS when offered; ?starttls=required insists) or smtps://, "
        "user and password in the URL. The default is `make run`'s local mail catcher",
    )
    smtp_timeout_seconds: Seconds = 10
    mail_from: Annotated[str, AfterValidator(_mail_address)] = Field(
        "no-reply@localhost", description="sender of every mail: Name <address> or an address"
    )
    public_url: Annotated[str, AfterValidator(_public_url)] = Field(
        "http://localhost:8000", description="the front end's URL: mailed links start with it"
    )
    email_verification: Literal["mandatory", "optional", "none"] = Field(
        "optional",
        description="mandatory: no login before the address is confirmed; optional: a "
        "confirmation link is mailed, logins work meanwhile; none: nothing is mailed",
    )
    email_verification_ttl_seconds: int = Field(259_200, ge=60, description="link lifetime")
    password_reset_ttl_seconds: int = Field(1800, ge=60, description="link lifetime")
    mail_requests_per_account: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "3/hour", description="password-reset and verification mails asked for, per address"
    )
    mail_requests_per_address: Annotated[str, AfterValidator(_rate_limit)] = Field(
        "10/hour", description="the same, per client address"
    )
    outbox_sweep_seconds: Seconds = Field(
        60, description="how often the clock enqueues mails a request could not (broker down)"
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
    task_max_deliveries: int = Field(
        3, ge=1, description="a task whose worker dies this many times is dead-lettered"
    )
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

    @property
    def passkey_rp_id(self) -> str:
        return self.webauthn_rp_id or (urlsplit(self.public_url).hostname or "localhost")

    @property
    def passkey_origins(self) -> tuple[str, ...]:
        if self.webauthn_origins:
            return self.webauthn_origins
        parts = urlsplit(self.public_url)  # PUBLIC_URL may carry a path; an origin does not
        return (_origin(f"{parts.scheme}://{parts.netloc}"),)

    @model_validator(mode="after")
    def _passkeys_fit_their_origins(self) -> "Settings":
        # What a browser would refuse at every ceremony stops the process instead: an RP ID is
        # the origin's host or a parent domain of it, on HTTPS (localhost may use http).
        # (Origins default to PUBLIC_URL's, whose host is the default RP ID: they always fit.)
        rp_id = self.passkey_rp_id.lower()
        for origin in self.passkey_origins:
            parts = urlsplit(origin)
            host = parts.hostname or ""
            if host != rp_id and not host.endswith(f".{rp_id}"):
                raise ValueError(
                    f"WEBAUTHN_RP_ID {rp_id} must be the host of every passkey origin or a "
                    f"parent domain of it; {origin} is not (set WEBAUTHN_RP_ID, "
                    "WEBAUTHN_ORIGINS or PUBLIC_URL)"
                )
            # Only for origins set on purpose: an http PUBLIC_URL (a LAN host in development)
            # still starts the service; browsers just offer no passkeys there.
            insecure = parts.scheme != "https" and host != "localhost"
            if self.webauthn_origins and insecure and not host.endswith(".localhost"):
                raise ValueError(
                    f"passkeys need HTTPS (or http://localhost): {origin} will not do "
                    "(set WEBAUTHN_ORIGINS or PUBLIC_URL)"
                )
        return self

    _env_flags: dict[str, bool] = PrivateAttr(default_factory=dict)
    _secret_files: dict[str, Path] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # NAME_FILE before NAME: where both are set, its "not both" answer is the one kept.
        sources = (init_settings, SecretFiles(settings_cls), env_settings, dotenv_settings)
        return (*sources, file_secret_settings)

    @field_validator("*", mode="before")
    @classmethod
    def _secret_file_problem(cls, value: object) -> object:
        # SecretFiles hands over what went wrong with a NAME_FILE as the field's value, so that
        # it is reported with every other bad variable, not instead of them.
        if isinstance(value, SecretFiles.Problem):
            raise ValueError(value.message)
        return value

    @model_validator(mode="after")
    def _remember_secret_files(self) -> "Settings":
        self._secret_files = secret_file_paths(type(self))
        return self

    def secret_file(self, field: str) -> Path | None:
        """The file a secret setting was read from (`database_url`: DATABASE_URL_FILE), if any:
        whoever opens connections reads it again each time, so it may change while we run."""
        return self._secret_files.get(field)

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
    if message.startswith(f"{name}_FILE") or message.startswith(f"{name} and"):
        return message  # about the NAME_FILE variable, which it names itself
    if error.get("type") == "missing" and name.lower() in secret_fields(Settings):
        return f"{name} (or {name}_FILE): {message}"
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
