"""Releases take turns: one PostgreSQL advisory lock around every `release`'s migrations.

Two releases started together (two deploys, a retried Job, a Procfile release phase on two
apps sharing a database) would otherwise both create `alembic_version` or both apply the same
migration, and one would fail. Here the second waits, up to RELEASE_WAIT_SECONDS, then finds
nothing left to apply. The lock is held by the session, not a transaction, so it also covers a
migration that commits part-way (an index built CONCURRENTLY outside a transaction).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc
import structlog
from sqlalchemy import Connection, text

log = structlog.get_logger(__name__)

MIGRATION_LOCK = 0x12F  # any constant bigint, the same in every release of this service


class MigrationLockBusy(Exception):
    """Another release held the migration lock for longer than this one would wait."""


@contextmanager
def migration_turn(connection: Connection, wait_seconds: float) -> Iterator[None]:
    """Hold the migration lock for the block; wait for it at most `wait_seconds`."""
    params = {"key": MIGRATION_LOCK}
    if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), params):
        log.info("another release is migrating: waiting for it", wait_seconds=wait_seconds)
        # The wait has its own bound: the connection's lock_timeout is the one each migration
        # statement gets for a table lock, and is short on purpose. Local to this transaction.
        wait_ms = str(int(wait_seconds * 1000))
        for timeout in ("lock_timeout", "statement_timeout"):
            connection.execute(
                text("SELECT set_config(:name, :ms, true)"), {"name": timeout, "ms": wait_ms}
            )
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), params)
        except sqlalchemy.exc.OperationalError as exc:
            busy = f"another release still migrating after {wait_seconds}s"
            raise MigrationLockBusy(busy) from exc
    connection.commit()  # ends the transaction (and its lock_timeout); the session keeps the lock
    try:
        yield
    finally:
        connection.rollback()  # a failed migration leaves its transaction aborted
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), params)
        connection.commit()
