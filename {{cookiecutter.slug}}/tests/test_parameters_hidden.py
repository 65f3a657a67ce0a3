"""Bound parameters never reach logs or dead letters: a failed statement's text carries emails,
password hashes and note bodies, and every engine is made with hide_parameters (core/db.py).

Statements are made to fail by a trigger, the way a constraint or a bug would, with values the
test can recognise; then every line the processes wrote, and the dead letter, are searched."""

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dev import services

from .conftest import PASSWORD, Process, Web, broker_client, fresh_database, release, wait_until

REFUSE = """
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$;
CREATE TRIGGER refuse_users BEFORE INSERT ON users FOR EACH ROW
    WHEN (NEW.email LIKE 'leak-%') EXECUTE FUNCTION refuse();
CREATE TRIGGER refuse_notes BEFORE UPDATE ON notes FOR EACH ROW
    WHEN (NEW.summary LIKE 'leak-%') EXECUTE FUNCTION refuse();
"""


@pytest.fixture
def refusing(migrated: dict[str, str], servers: services.Servers) -> Iterator[dict[str, str]]:
    """A database of its own whose triggers refuse rows carrying a `leak-` value."""
    with fresh_database(servers.postgres, "test_hidden") as url:
        env = {**migrated, "DATABASE_URL": url, "TASK_QUEUE": f"hidden-{secrets.token_hex(4)}"}
        release(env)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(REFUSE)
        yield env


def test_a_failed_insert_logs_neither_the_email_nor_the_hash(
    start: Any, refusing: dict[str, str]
) -> None:
    web: Web = start("web", **refusing)
    web.wait_ready()
    email = f"leak-{secrets.token_hex(6)}@example.com"
    response = web.client.post("/api/v1/users", json={"email": email, "password": PASSWORD})
    assert response.status_code == 500, response.text  # the statement really failed
    web.wait_for_log("unhandled error")
    web.stop()
    text = "\n".join(web.lines)
    assert "refused by a test trigger" in text  # the error was logged, with its statement
    assert "INSERT INTO users" in text
    assert email not in text
    assert "$argon2" not in text  # the new password's hash
    assert PASSWORD not in text


def test_a_dead_lettered_statement_keeps_its_values_out_of_the_row_and_the_logs(
    start: Any, refusing: dict[str, str]
) -> None:
    secret = f"leak-{secrets.token_hex(6)}@example.com"
    with psycopg.connect(refusing["DATABASE_URL"], autocommit=True) as db:
        row = db.execute(
            "INSERT INTO notes (title, body) VALUES ('t', %s) RETURNING id",
            [f"{secret} is my address. Nothing else."],
        ).fetchone()
        assert row is not None
        # The summary is the body's first sentence: the UPDATE's parameters carry the address.
        worker: Process = start("worker", **refusing, FLAG_NOTE_SUMMARY="on")
        broker_client(refusing).send_task(
            "notes.enrich", args=[row[0]], queue=refusing["TASK_QUEUE"]
        )

        def dead() -> Any:
            return db.execute("SELECT error, args::text, kwargs::text FROM dead_letters").fetchone()

        letter = wait_until(dead, timeout=30)
        worker.wait_for_log("task failed for good")
        worker.stop()
    assert "refused by a test trigger" in letter[0], letter  # the statement's error is kept
    assert not [column for column in letter if secret in column], letter
    text = "\n".join(worker.lines)
    assert "UPDATE notes" in text  # the error was logged, with its statement
    assert secret not in text
