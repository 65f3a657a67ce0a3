"""Factor IV, backing services: PostgreSQL is reached only through an engine built from config.

Web uses the async engine; the worker, the clock and Alembic use the sync one. Both use psycopg 3,
so one driver and one URL serve every process. With DATABASE_URL_FILE, each new connection
logs in with the user and password the file holds then (credentials.py): a rotated password
needs no restart.
"""

from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from .credentials import database_credentials
from .secret_files import file_variable
from .settings import Settings


def _engine_options(settings: Settings) -> dict[str, Any]:
    timeout_ms = int(settings.db_timeout_seconds * 1000)
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_timeout_seconds,
        # No ping before each checkout: it is a round trip per request. A connection that died
        # (database restart) fails one request with a 503 and the pool then drops them all.
        "pool_pre_ping": False,
        "connect_args": {
            "connect_timeout": max(1, round(settings.db_timeout_seconds)),
            # The server aborts statements and lock waits that outlive the budget.
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
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


def create_async_db_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """Not `pooled`: each connect() logs in anew, as /readyz's credential check needs."""
    options = _engine_options(settings)
    if not pooled:
        options = {"poolclass": NullPool, "connect_args": options["connect_args"]}
    engine = create_async_engine(settings.database_url.get_secret_value(), **options)
    _reread_credentials(engine.sync_engine, settings)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
