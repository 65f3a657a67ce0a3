"""Two services rendered from this template on one Redis (one logical database, as a shared
managed Redis gives): each keeps to its own keys (REDIS_KEY_PREFIX), so one never ends the other's
sessions, limits the other's clients or holds the other's clock lock."""

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from .conftest import PASSWORD, Process, Web, fresh_database, release, wait_until
from .test_throttle import guess


@pytest.fixture
def service(migrated: dict[str, str], servers: Any) -> Iterator[Callable[[str], dict[str, str]]]:
    """`service(prefix)`: the environment of a service of its own (a fresh database and queue,
    that key prefix) on the same Redis database as every other."""
    with contextlib.ExitStack() as stack:

        def _service(prefix: str) -> dict[str, str]:
            database_url = stack.enter_context(fresh_database(servers.postgres, prefix))
            env = {
                **migrated,
                "DATABASE_URL": database_url,
                "REDIS_KEY_PREFIX": prefix,
                "TASK_QUEUE": f"{migrated['TASK_QUEUE']}-{prefix}",
            }
            release(env)
            return env

        yield _service


def test_two_services_on_one_redis_keep_to_their_own_keys(
    start: Callable[..., Any], service: Callable[[str], dict[str, str]]
) -> None:
    limited = {"LOGIN_FAILURES_PER_ADDRESS": "2/minute"}
    ours: Web = start("web", **limited, **service("ours"))
    theirs: Web = start("web", **limited, **service("theirs"))
    ours.wait_ready()
    theirs.wait_ready()
    # Each service's first account: user 1 in both.
    our_email = ours.sign_up()
    ours_a, ours_b = ours.signed_in(our_email), ours.signed_in(our_email)
    their_client = theirs.signed_in()
    ids = [c.get("/api/v1/session").json()["user"]["id"] for c in (ours_a, their_client)]
    assert ids == [1, 1]
    # Ending user 1's other sessions in ours ends none of user 1's in theirs.
    change = {"current_password": PASSWORD, "new_password": "a brand new pass phrase 10"}
    assert ours_a.put("/api/v1/users/me/password", json=change).status_code == 204
    assert ours_b.get("/api/v1/session").status_code == 401
    assert their_client.get("/api/v1/session").status_code == 200
    # A client limited by one service is not limited by the other.
    assert [guess(ours, "x@example.com", "10.40.0.1") for _ in range(3)] == [401, 401, 429]
    assert guess(theirs, "x@example.com", "10.40.0.1") == 401
    with redis.Redis.from_url(ours.env["REDIS_URL"]) as r:
        keys = {k.decode().split(":")[0] for k in r.scan_iter()}
    assert {"ours", "theirs"} <= keys
    assert keys <= {"ours", "theirs", "{{ cookiecutter.package }}"}, keys  # the other tests'


def test_two_services_on_one_redis_each_keep_their_clock_running(
    start: Callable[..., Any], service: Callable[[str], dict[str, str]]
) -> None:
    fast = {"HEARTBEAT_SECONDS": "1", "CLOCK_LOCK_TIMEOUT_SECONDS": "5"}
    clocks: list[Process] = [start("clock", **fast, **service(name)) for name in ("a", "b")]
    for clock in clocks:
        clock.wait_for_log("Acquired lock", timeout=15)  # neither waits as the other's standby
    wait_until(lambda: all(any("task sent" in x for x in c.lines) for c in clocks), timeout=10)
