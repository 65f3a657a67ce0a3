"""Factor IV, backing services: PostgreSQL is reached only through an engine built from config.

Web uses the async engine; the worker, the clock and Alembic use the sync one. Both use psycopg 3,
so one driver and one URL serve every process. With DATABASE_URL_FILE, each new connection
logs in with the user and password the file holds then (credentials.py): a rotated password
needs no restart.
"""

from typing import Any

from sqlalchemy import Engine, NullPool, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from .credentials import database_credentials
from .secret_files import file_variable
from .settings import Settings


def _engine_options(
    settings: Settings, statement_seconds: float | None = None, lock_seconds: float | None = None
) -> dict[str, Any]:
    statement_ms = int((statement_seconds or settings.db_timeout_seconds) * 1000)
    lock_ms = int((lock_seconds or settings.db_timeout_seconds) * 1000)
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_timeout_seconds,
        # No ping before each checkout: it is a round trip per request. A connection that died
        # (database restart) fails one request with a 503 and the pool then drops them all.
        "pool_pre_ping": False,
        # An error's text leaves out the statement's values: they are emails, password hashes,
        # tokens, and the text reaches log lines and dead_letters rows.
        "hide_parameters": True,
        "connect_args": {
            "connect_timeout": max(1, round(settings.db_timeout_seconds)),
            # The server aborts statements and lock waits that outlive the budget.
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}",
            # No server-side prepared statements: safe behind PgBouncer in transaction mode.
            "prepare_threshold": None,
        },
    }


def _reread_credentials(engine: Engine, settings: Settings) -> None:
    if (path := settings.secret_file("database_url")) is not None:
        database_credentials(engine, file_variable("database_url"), path)


def create_db_engine(settings: Settings) -> Engine:
    engine = create_engine(settings.database_url.get_secret_value(), **_engine_options(settings))
    _reread_credentials(engine, settings)
    return engine


def create_release_engine(settings: Settings) -> Engine:
    """For `release` alone: a migration may rewrite a big table, so it gets statement and lock
    timeouts of its own (RELEASE_*), not the request path's few seconds."""
    options = _engine_options(
        settings,
        statement_seconds=settings.release_statement_timeout_seconds,
        lock_seconds=settings.release_lock_timeout_seconds,
    )
    engine = create_engine(settings.database_url.get_secret_value(), **options)
    _reread_credentials(engine, settings)
    return engine


def create_async_db_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """Not `pooled`: each connect() logs in anew, as /readyz's credential check needs."""
    options = _engine_options(settings)
    if not pooled:
        options = {
            "poolclass": NullPool,
            "hide_parameters": True,
            "connect_args": options["connect_args"],
        }
    engine = create_async_engine(settings.database_url.get_secret_value(), **options)
    _reread_credentials(engine.sync_engine, settings)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_unpooled_db_engine(settings: Settings) -> Engine:
    """An engine that keeps no connection between uses: for a process that forks after using it
    (the worker's main process, whose pool children must not share its connections) or that
    uses it a few times and exits (admin processes)."""
    options = _engine_options(settings)
    for pool_option in ("pool_size", "max_overflow", "pool_timeout", "pool_pre_ping"):
        del options[pool_option]
    engine = create_engine(settings.database_url.get_secret_value(), poolclass=NullPool, **options)
    _reread_credentials(engine, settings)
    return engine
