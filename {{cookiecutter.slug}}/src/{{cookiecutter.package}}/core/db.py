"""Factor IV, backing services: PostgreSQL is reached only through an engine built from config.

Web uses the async engine; the worker, the clock and Alembic use the sync one. Both use psycopg 3,
so one driver and one URL serve every process.
"""

from typing import Any

from sqlalchemy import Engine, NullPool, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

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


def create_db_engine(settings: Settings) -> Engine:
    return create_engine(settings.database_url.get_secret_value(), **_engine_options(settings))


def create_async_db_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url.get_secret_value(), **_engine_options(settings)
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_unpooled_db_engine(settings: Settings) -> Engine:
    """An engine that keeps no connection between uses: for a process that forks after using it
    (the worker's main process, whose pool children must not share its connections) or that
    uses it a few times and exits (admin processes)."""
    options = _engine_options(settings)
    for pool_option in ("pool_size", "max_overflow", "pool_timeout", "pool_pre_ping"):
        del options[pool_option]
    return create_engine(settings.database_url.get_secret_value(), poolclass=NullPool, **options)
