"""Database and Redis credentials read from their files each time a connection is opened
(DATABASE_URL_FILE, REDIS_URL_FILE, BROKER_URL_FILE: see secret_files.py), so a rotated password
is used by the next connection and the ones already open carry on: `database_credentials` for
SQLAlchemy (its `do_connect` event), `RedisFileCredentials` for redis-py (a credential provider,
which kombu and redbeat pass on). One small file read per new connection, nothing per request.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, event

from .secret_files import SecretFileError, read_secret_file


class DatabaseCredentialsError(SecretFileError, psycopg.OperationalError):
    """Raised where psycopg's own connection error would be: SQLAlchemy wraps it like one, and a
    request that needed a new connection gets the 503 of an unreachable database, not a 500."""


class RedisCredentialsError(SecretFileError, RedisConnectionError):
    """Raised where redis-py's own connection error would be, for the same reason."""


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
