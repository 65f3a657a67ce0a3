"""Dead letters an on-call engineer can act on (factor XII): `jobs dead list|redrive|purge` and
`jobs queues`, run as the admin processes they are, against real workers on Redis and RabbitMQ."""

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import AMQP_URL, PLAIN_HTTP, Process, broker_client, free_port, wait_until
from .test_admin import one_line_error, parsed
from .test_worker import enriched, post_note

# A worker that gives up fast: one retry, short waits on a locked row.
FAILS_FAST = {
    "TASK_MAX_RETRIES": "1",
    "TASK_RETRY_BACKOFF_SECONDS": "0.2",
    "DB_TIMEOUT_SECONDS": "0.5",
}


def jobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package }}", "jobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def results(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON lines a `jobs` command printed as its result (log lines, which carry an
    `event`, aside), after checking that it succeeded."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [line for line in lines if "event" not in line]


def dead_letter(db: psycopg.Connection[Any], task: str = "notes.enrich", **values: Any) -> int:
    """A dead letter as the worker writes one; its id."""
    row = {
        "task_id": secrets.token_hex(16),
        "task_name": task,
        "args": "[1]",
        "kwargs": "{}",
        "error": "OperationalError('boom')",
        "request_id": "req-stored-0001",
        "attempts": 3,
        **values,
    }
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    found = db.execute(
        f"INSERT INTO dead_letters ({columns}) VALUES ({marks}) RETURNING id",  # noqa: S608
        list(row.values()),
    ).fetchone()
    assert found is not None
    return int(found[0])


def queue_depth(env: dict[str, str]) -> int:
    """The messages waiting in the environment's queue, as the broker counts them (what `jobs
    queues` shows is test_queues_shows_depth_and_the_oldest_message_age's; a process each
    time would cost a second of CPU for no more proof)."""
    client = broker_client(env)
    try:
        with client.connection_for_write() as conn:
            if conn.transport.driver_type == "redis":  # kombu's own count: a list per priority
                return int(conn.default_channel._size(env["TASK_QUEUE"]))
            with conn.channel() as channel:  # a failed passive declare closes its channel
                try:
                    declared = channel.queue_declare(env["TASK_QUEUE"], passive=True)
                except conn.channel_errors:  # no such queue yet: nothing waits
                    return 0
                return int(declared.message_count)
    finally:
        client.close()


def gauge(worker: Process, task: str) -> str | None:
    metrics = httpx.get(
        f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics", verify=PLAIN_HTTP
    ).text
    prefix = 'celery_dead_letters{task="%s"} ' % task  # noqa: UP031 - braces would be Jinja's
    return next((ln[len(prefix) :] for ln in metrics.splitlines() if ln.startswith(prefix)), None)


def waiting_letters(db: psycopg.Connection[Any], task: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM dead_letters WHERE task_name = %s AND redriven_at IS NULL", [task]
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_task_failed_for_good_is_listed_redriven_once_fixed_and_succeeds(
    start: Callable[..., Any], queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    env = queue_env
    web = start("web", **env)
    web.wait_ready()
    note_id = post_note(web.signed_in(), "a b c", **{"X-Request-ID": "req-redrive-0001"})
    # The cause: the note's row is locked, so every attempt times out on it.
    with psycopg.connect(env["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        worker: Process = start("worker", **env, **FAILS_FAST)
        (letter_id,) = wait_until(
            lambda: db.execute(
                "SELECT id FROM dead_letters"
                " WHERE task_name = 'notes.enrich' AND args::jsonb = %s::jsonb",
                [f"[{note_id}]"],
            ).fetchone(),
            timeout=30,
        )
    # The alert: the worker's gauge counts it, with the others of this run not redriven.
    waiting = waiting_letters(db, "notes.enrich")
    assert waiting >= 1
    assert wait_until(lambda: gauge(worker, "notes.enrich") == f"{waiting}.0", timeout=5)

    # The list: what failed, with what, for which request, how often.
    listed = results(jobs(env, "dead", "list", "--task", "notes.enrich", "--waiting"))
    (line,) = [row for row in listed if row["id"] == letter_id]
    assert line["args"] == str(note_id)
    assert "while locking tuple" in line["error"]
    assert (line["attempts"], line["request_id"]) == (2, "req-redrive-0001")
    assert line["failed_at"]
    assert line["redriven_at"] is None

    # The fix is in (the lock is gone); the redrive sends it again.
    (redriven,) = results(jobs(env, "dead", "redrive", str(letter_id)))
    assert redriven["redriven"] is True
    new_task_id = redriven["redriven_task_id"]
    wait_until(lambda: enriched(db, note_id), timeout=20)
    ran = worker.wait_for_log("note enriched")
    assert (ran["task_id"], ran["request_id"]) == (new_task_id, "req-redrive-0001")

    # The row stays, marked: the audit trail. The gauge counts one less.
    row = db.execute(
        "SELECT redriven_at IS NOT NULL, redriven_task_id FROM dead_letters WHERE id = %s",
        [letter_id],
    ).fetchone()
    assert row == (True, new_task_id)
    assert wait_until(lambda: gauge(worker, "notes.enrich") == f"{waiting - 1}.0", timeout=5)
    (line,) = [r for r in results(jobs(env, "dead", "list")) if r["id"] == letter_id]
    assert line["redriven_at"]
    assert line["redriven_task_id"] == new_task_id
    assert letter_id not in [r["id"] for r in results(jobs(env, "dead", "list", "--waiting"))]

    # Run again, it sends nothing: the row was redriven once.
    (again,) = results(jobs(env, "dead", "redrive", str(letter_id)))
    assert (again["redriven"], again["redriven_task_id"]) == (False, new_task_id)


def test_a_redriven_task_failing_again_gets_a_row_pointing_at_its_origin(
    start: Callable[..., Any], queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    env = queue_env
    web = start("web", **env)
    web.wait_ready()
    note_id = post_note(web.signed_in(), "x")
    with psycopg.connect(env["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        start("worker", **env, **FAILS_FAST)

        def letters() -> list[tuple[Any, ...]]:
            return db.execute(
                "SELECT id, redriven_from, task_id FROM dead_letters"
                " WHERE args::jsonb = %s::jsonb ORDER BY id",
                [f"[{note_id}]"],
            ).fetchall()

        ((first, origin, _),) = wait_until(letters, timeout=30)
        assert origin is None
        (redriven,) = results(jobs(env, "dead", "redrive", str(first)))  # not fixed yet
        second = wait_until(lambda: len(letters()) == 2 and letters()[1], timeout=30)
    assert second[1:] == (first, redriven["redriven_task_id"])
    assert db.execute(
        "SELECT redriven_task_id FROM dead_letters WHERE id = %s", [first]
    ).fetchone() == (redriven["redriven_task_id"],)


def test_two_redrives_of_one_row_at_once_send_it_once(
    queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    env = {**queue_env, "DB_TIMEOUT_SECONDS": "20"}
    letter_id = dead_letter(db)
    command = [sys.executable, "-m", "{{ cookiecutter.package }}", "jobs", "dead", "redrive"]

    def waiting_on_the_row() -> int:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'UPDATE dead_letters%%' AND datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0

    # Two terminals, one row: both are made to reach it at the same moment.
    with psycopg.connect(env["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM dead_letters WHERE id = %s FOR UPDATE", [letter_id])
        terminals = [
            subprocess.Popen([*command, str(letter_id)], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        wait_until(
            lambda: waiting_on_the_row() == 2 or any(t.poll() is not None for t in terminals),
            timeout=30,
        )
    outputs = [terminal.communicate(timeout=30)[0] for terminal in terminals]
    assert [terminal.returncode for terminal in terminals] == [0, 0], outputs
    lines = [json.loads(line) for out in outputs for line in out.splitlines()]
    done = sorted(line["redriven"] for line in lines if "event" not in line)
    assert done == [False, True]
    assert queue_depth(env) == 1  # one message on the broker, not two


def test_a_redrive_the_broker_refuses_leaves_the_row_to_redrive_later(
    queue_env: dict[str, str], db: psycopg.Connection[Any], broker: str
) -> None:
    letter_id = dead_letter(db, request_id="req-refused-0001")
    scheme = "amqp://guest:guest@" if broker.startswith("amqp") else "redis://"
    unreachable = {**queue_env, "BROKER_URL": f"{scheme}127.0.0.1:{free_port()}/"}
    refused = jobs(unreachable, "dead", "redrive", str(letter_id))
    one_line_error(refused, str(letter_id), "broker")
    row = db.execute(
        "SELECT redriven_at, redriven_task_id FROM dead_letters WHERE id = %s", [letter_id]
    ).fetchone()
    assert row == (None, None)  # kept, unmarked: nothing was sent
    assert queue_depth(queue_env) == 0
    (redriven,) = results(jobs(queue_env, "dead", "redrive", str(letter_id)))  # broker back
    assert redriven["redriven"] is True
    assert queue_depth(queue_env) == 1


def test_redrive_all_of_a_task(queue_env: dict[str, str], db: psycopg.Connection[Any]) -> None:
    env = queue_env
    task = f"tests.t{secrets.token_hex(3)}"
    letters = [dead_letter(db, task=task, failed_at="2000-01-01T00:00:00Z")]
    letters += [dead_letter(db, task=task) for _ in range(2)]
    other = dead_letter(db, task=f"{task}.other")

    redriven = results(jobs(env, "dead", "redrive", "--all", "--task", task))
    assert sorted(line["id"] for line in redriven) == letters
    assert all(line["redriven"] for line in redriven)
    assert queue_depth(env) == 3
    assert results(jobs(env, "dead", "redrive", "--all", "--task", task)) == []
    assert db.execute("SELECT redriven_at FROM dead_letters WHERE id = %s", [other]).fetchone() == (
        None,
    )


def test_list_filters_and_purge(migrated: dict[str, str], db: psycopg.Connection[Any]) -> None:
    # The database alone: no broker is asked, so once is enough (the redrives above run on each).
    task = f"tests.t{secrets.token_hex(3)}"
    old = dead_letter(db, task=task, failed_at="2000-01-01T00:00:00Z")
    new = [dead_letter(db, task=task) for _ in range(2)]
    recent = results(jobs(migrated, "dead", "list", "--task", task, "--since", "1h"))
    assert [line["id"] for line in recent] == new[::-1]  # newest first
    assert len(results(jobs(migrated, "dead", "list", "--task", task, "--limit", "1"))) == 1

    (purged,) = results(jobs(migrated, "dead", "purge", "--older-than", "30d"))
    assert purged["purged"] >= 1
    remaining = {line["id"] for line in results(jobs(migrated, "dead", "list", "--task", task))}
    assert old not in remaining
    assert remaining == set(new)


def test_bad_input_is_one_line_and_a_non_zero_exit(
    migrated: dict[str, str], db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package }}.admin.jobs import parse  # here: collecting the tests needs none of it

    letter_id = dead_letter(db)
    wrong = {  # each command, and what its one line must name
        ("dead", "purge", "--older-than", "a while"): "duration",
        ("dead", "purge"): "--older-than",
        ("dead", "list", "--since", "yesterday"): "yesterday",
        ("dead", "list", "--limit", "0"): "--limit",
        ("dead", "redrive"): "--all",
        ("dead", "redrive", str(letter_id), "--all"): "--all",
        ("dead", "redrive", "2147483000"): "2147483000",
        ("dead", "redrive", "abc"): "abc",
        ("dead", "redrive", str(letter_id), "--task", "x"): "--task",
        ("dead", "frobnicate"): "",
        ("frobnicate",): "",
    }
    # As the process itself: an id it finds no row for, and a command it does not know; the
    # others are refused before anything else happens, where `parsed` has them.
    processes = [("dead", "redrive", "2147483000"), ("frobnicate",)]
    with ThreadPoolExecutor(2) as pool:  # they need nothing of each other
        ran = dict(zip(processes, pool.map(lambda a: jobs(migrated, *a), processes), strict=True))
    for args, word in wrong.items():
        one_line_error(ran[args] if args in ran else parsed(parse, capsys, *args), word)
    assert db.execute(
        "SELECT redriven_at FROM dead_letters WHERE id = %s", [letter_id]
    ).fetchone() == (None,)


def test_queues_shows_depth_and_the_oldest_message_age(
    start: Callable[..., Any], queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    env = queue_env
    web = start("web", **env)
    web.wait_ready()
    user = web.signed_in()
    ids = [post_note(user, "a b") for _ in range(3)]
    time.sleep(1.5)
    post_note(user, "a b c")
    (line,) = [q for q in results(jobs(env, "queues")) if q["queue"] == env["TASK_QUEUE"]]
    assert line["broker"] == ("amqp" if AMQP_URL and env["BROKER_URL"] == AMQP_URL else "redis")
    assert line["depth"] == 4
    assert 1.5 <= line["oldest_age_seconds"] < 30
    assert queue_depth(env) == 4  # looking at the oldest took nothing away
    start("worker", **env)
    wait_until(lambda: all(enriched(db, note_id) for note_id in ids), timeout=30)
    (line,) = [q for q in results(jobs(env, "queues")) if q["queue"] == env["TASK_QUEUE"]]
    assert (line["depth"], line["oldest_age_seconds"]) == (0, None)


def test_a_redrive_whose_message_is_lost_is_sent_again_by_the_sweep(
    start: Callable[..., Any], queue_env: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    # The Redis window: a worker killed after popping the message and before recording it as
    # unacknowledged leaves it nowhere. Emptying the queue after the redrive loses it the same way.
    env = {
        **queue_env,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": "5",
        "TASK_TIME_LIMIT_SECONDS": "4",
        "TASK_RETRY_BACKOFF_MAX_SECONDS": "3",
    }
    row = db.execute("INSERT INTO notes (title, body) VALUES ('t', 'a b') RETURNING id").fetchone()
    assert row is not None
    note_id = row[0]
    letter_id = dead_letter(db, args=f"[{note_id}]")
    (redriven,) = results(jobs(env, "dead", "redrive", str(letter_id)))
    client = broker_client(env)
    with client.connection_for_write() as conn:
        assert conn.default_channel.queue_purge(env["TASK_QUEUE"]) == 1
    start("worker", **env)
    time.sleep(5.5)  # the visibility timeout: a redrive this old has surely been lost or run
    client.send_task("dead_letters.sweep", queue=env["TASK_QUEUE"])
    wait_until(lambda: enriched(db, note_id), timeout=20)
    outcome = wait_until(
        lambda: db.execute(
            "SELECT redriven_task_id, redrive_succeeded_at FROM dead_letters"
            " WHERE id = %s AND redrive_succeeded_at IS NOT NULL",
            [letter_id],
        ).fetchone(),
        timeout=10,
    )
    assert outcome[0] == redriven["redriven_task_id"]  # the same task, sent again
    client.close()
