"""Secrets from files: `NAME_FILE=/path` beside every secret setting `NAME`, as Kubernetes
(projected volumes), Docker (`secrets:`) and Vault's agent deliver them, so a credential can
change under a running process without its environment changing.

Two parts. At start, `SecretFiles` is a pydantic-settings source: the file's content is the
setting's value (a trailing newline ignored), checked as the variable's would be, and what goes
wrong with the file (both variables set, a file missing or unreadable) is reported with every
other bad variable, naming the variable and never the content. While running, the processes read
the credentials of DATABASE_URL_FILE, REDIS_URL_FILE and BROKER_URL_FILE again each time they open
a connection (`database_credentials` for SQLAlchemy, `RedisFileCredentials` for redis-py), so a
rotated password is used by the next connection and the ones already open carry on. That is one
small file read per new connection, nothing per request.
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, event


class SecretFileError(Exception):
    """A NAME_FILE that cannot be used; the message names the variable, never the content."""

    def __init__(self, variable: str, reason: str, path: Path | None = None) -> None:
        self.variable = variable
        self.reason = reason  # short and fixed: readiness shows it
        where = f" ({path})" if path is not None else ""
        super().__init__(f"{variable}{where}: {reason}")


class DatabaseCredentialsError(SecretFileError, psycopg.OperationalError):
    """Raised where psycopg's own connection error would be: SQLAlchemy wraps it like one, and a
    request that needed a new connection gets the 503 of an unreachable database, not a 500."""


class RedisCredentialsError(SecretFileError, RedisConnectionError):
    """Raised where redis-py's own connection error would be, for the same reason."""


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def secret_fields(settings_cls: type[BaseSettings]) -> list[str]:
    """Every field typed SecretStr (alone, optional or in a tuple): each has its NAME_FILE."""
    return [name for name, f in settings_cls.model_fields.items() if _is_secret(f.annotation)]


def file_variable(field: str) -> str:
    return f"{field.upper()}_FILE"


def secret_file_paths(settings_cls: type[BaseSettings]) -> dict[str, Path]:
    """The files named by the NAME_FILE variables set, by field."""
    return {
        field: Path(os.environ[file_variable(field)])
        for field in secret_fields(settings_cls)
        if os.environ.get(file_variable(field))
    }


def read_secret_file(
    variable: str, path: Path, error: type[SecretFileError] = SecretFileError
) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(variable, "file not found", path) from None
    except PermissionError:
        raise error(variable, "file not readable (permission denied)", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(variable, f"file not readable ({type(exc).__name__})", path) from None
    # An empty file is a value like any other: the setting's own rules judge it (no fallback
    # keys is fine, an empty URL is not).
    return text.rstrip("\r\n")


class SecretFiles(PydanticBaseSettingsSource):
    """The pydantic-settings source of the NAME_FILE variables."""

    @dataclass(frozen=True)
    class Problem:
        message: str  # the field's validator raises it: see Settings._secret_file_problem

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in secret_fields(self.settings_cls):
            variable = file_variable(field)
            path = os.environ.get(variable)
            if path is None:
                continue
            if field.upper() in os.environ:
                values[field] = self.Problem(f"{field.upper()} and {variable} are both set")
            elif not path:
                values[field] = self.Problem(f"{variable} is empty: give the path of a file")
            else:
                try:
                    values[field] = read_secret_file(variable, Path(path))
                except SecretFileError as exc:
                    values[field] = self.Problem(str(exc))
        return values


@dataclass(frozen=True)
class UrlCredentials:
    username: str | None
    password: str | None


def url_credentials(
    variable: str, path: Path, schemes: tuple[str, ...], error: type[SecretFileError]
) -> UrlCredentials:
    """The user and password of the URL in the file, read now."""
    text = read_secret_file(variable, path, error).strip()
    try:
        parts = urlsplit(text)
        scheme, host = parts.scheme, parts.hostname
        username, password = parts.username, parts.password
    except ValueError:  # a bad port or bracket: the message would quote the text
        scheme, host, username, password = "", None, None, None
    if scheme not in schemes or not host:
        raise error(variable, f"not a {schemes[0]} URL", path)
    return UrlCredentials(
        unquote(username) if username else None, unquote(password) if password else None
    )


def without_credentials(url: str) -> str:
    """The URL with no user or password: redis-py refuses both those and a credential provider."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=host))


POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss")


def database_credentials(engine: Engine, variable: str, path: Path) -> None:
    """Have `engine` take its user and password from the file each time it connects.

    SQLAlchemy's `do_connect` event runs before every new DBAPI connection, with the arguments
    about to be used: the pool's open connections are untouched, new ones log in as the file
    says. The host and database stay those of the start (a move is a redeploy, not a rotation).
    An unusable file fails that connection as psycopg would (DatabaseCredentialsError), and
    /readyz says why.
    """

    def reread(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        credentials = url_credentials(variable, path, POSTGRES_SCHEMES, DatabaseCredentialsError)
        for key, value in (("user", credentials.username), ("password", credentials.password)):
            if value is None:
                cparams.pop(key, None)
            else:
                cparams[key] = value

    event.listen(engine, "do_connect", reread)


class RedisFileCredentials(CredentialProvider):
    """redis-py asks this for the AUTH arguments each time it opens a connection (sync and
    asyncio clients, Celery's broker through kombu, redbeat): the file is read then, so the next
    connection uses a rotated password and open ones carry on."""

    def __init__(self, variable: str, path: Path) -> None:
        self.variable = variable
        self.path = path

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        credentials = url_credentials(
            self.variable, self.path, REDIS_SCHEMES, RedisCredentialsError
        )
        if credentials.password is None:
            raise RedisCredentialsError(self.variable, "the URL has no password", self.path)
        if credentials.username is None:
            return (credentials.password,)
        return (credentials.username, credentials.password)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()  # a small local file: not worth a thread


def redis_credentials(url: str, variable: str, path: Path | None) -> RedisFileCredentials | None:
    """The provider for a Redis URL read from `path`, or None where there is nothing to re-read:
    the URL came from the environment, or it has no password (no AUTH at all)."""
    if path is None or not urlsplit(url).scheme.startswith("redis"):
        return None
    with contextlib.suppress(ValueError):
        if urlsplit(url).password:
            return RedisFileCredentials(variable, path)
    return None
