"""Logins beside credential changes and under bursts, against real web processes: a login that
checked a password just before it changed never keeps a session, a change never half-happens,
and a burst of logins never starves the database pool (OWASP ASVS 5 V6, V7)."""

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import PASSWORD, TcpProxy, Web, error, new_email, wait_until
from .test_admin import users

NEW_PASSWORD = "a brand new pass phrase 9"
UNTHROTTLED = {
    "LOGIN_FAILURES_PER_ACCOUNT": "1000/minute",
    "LOGIN_FAILURES_PER_ADDRESS": "1000/minute",
}
# A web whose argon2 parameters were raised: logging in there, an account hashed with the
# defaults (t=2) verifies at once, then is rehashed at t=150 for seconds. That rehash is the
# window in which the tests below change the account (the request deadline is raised to match).
RAISED = {"PASSWORD_HASH_TIME_COST": "150", "REQUEST_TIMEOUT_SECONDS": "60"}


def log_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/session", json={"email": email, "password": password}, timeout=60)


@pytest.fixture
def held_login(start: Callable[..., Any]) -> Iterator[Callable[[str], Any]]:
    """`held_login(email)`: a login through the raised web, now inside its rehash; a future."""
    raised: Web = start("web", **RAISED)
    raised.wait_ready()
    client = raised.new_client()
    with ThreadPoolExecutor(1) as pool:

        def _login(email: str) -> Any:
            login = pool.submit(log_in, client, email)
            time.sleep(0.5)  # it has read the account, verified the password and is rehashing
            return login

        yield _login
    assert client.get("/api/v1/session").status_code == 401  # whatever the login said: no session


def stored_hash(db: psycopg.Connection[Any], email: str) -> str:
    row = db.execute("SELECT password_hash FROM users WHERE email = %s", [email]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_login_checking_the_old_password_during_a_change_gets_no_session_and_no_rehash(
    web: Web, held_login: Callable[[str], Any], db: psycopg.Connection[Any]
) -> None:
    email = web.sign_up()
    owner = web.signed_in(email)
    login = held_login(email)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert owner.put("/api/v1/users/me/password", json=change).status_code == 204
    assert not login.done(), "the login ended before the change: make its rehash slower"
    answer = login.result()
    assert answer.status_code == 401
    assert error(answer) == "wrong email or password"
    # Its rehash of the old password did not overwrite the new one.
    assert ",t=2," in stored_hash(db, email)
    assert log_in(web.new_client(), email, NEW_PASSWORD).status_code == 201
    assert log_in(web.new_client(), email, PASSWORD).status_code == 401


@pytest.mark.timing  # the rehash must outlast the start of `users disable`, a process
def test_a_login_checking_its_password_while_the_user_is_disabled_gets_no_session(
    web: Web, held_login: Callable[[str], Any], migrated: dict[str, str]
) -> None:
    email = web.sign_up()
    login = held_login(email)
    disabled = users(migrated, "disable", email)
    assert disabled.returncode == 0, disabled.stderr
    assert not login.done(), "the login ended before the disable: make its rehash slower"
    answer = login.result()
    assert answer.status_code == 401
    assert error(answer) == "wrong email or password"


def test_a_password_change_whose_sessions_cannot_be_ended_does_not_happen(
    start: Callable[..., Any],
    proxy: Callable[[str], TcpProxy],
    migrated: dict[str, str],
    db: psycopg.Connection[Any],
) -> None:
    redis = proxy(migrated["REDIS_URL"])
    web: Web = start("web", REDIS_URL=redis.url(migrated["REDIS_URL"]))
    web.wait_ready()
    email = web.sign_up()
    owner, elsewhere = web.signed_in(email), web.signed_in(email)
    before = stored_hash(db, email)
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    # The test holds the account's row, so the change waits at its UPDATE with every other
    # step done; Redis goes away; then the row is let go and the change goes on without Redis.
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM users WHERE email = %s FOR UPDATE", [email])
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(owner.put, "/api/v1/users/me/password", json=change)
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            wait_until(lambda: db.execute(waiting).fetchone()[0] > 0, timeout=10)  # type: ignore[index]
            redis.refuse()
            holder.rollback()
            assert answer.result().status_code == 503
    redis.heal()
    # Not half done: the password is the old one, and every session still works.
    assert stored_hash(db, email) == before
    assert owner.get("/api/v1/session").status_code == 200
    assert elsewhere.get("/api/v1/session").status_code == 200
    assert owner.put("/api/v1/users/me/password", json=change).status_code == 204  # and again
    assert elsewhere.get("/api/v1/session").status_code == 401


@pytest.mark.timing
def test_sixty_concurrent_logins_leave_a_pool_of_five_for_everything_else(
    start: Callable[..., Any],
) -> None:
    # Each check costs about 0.1 s, two at a time: the last of sixty waits 3 s for its turn,
    # as long as a pooled connection may be waited for (DB_TIMEOUT_SECONDS).
    # The request deadline is raised out of the way: on a busy machine the last of sixty hashes
    # can take longer than ten seconds to get its turn, which is no fault of the pool.
    web: Web = start(
        "web",
        DB_POOL_SIZE="5",
        PASSWORD_HASH_TIME_COST="10",
        PASSWORD_HASH_CONCURRENCY="2",
        REQUEST_TIMEOUT_SECONDS="60",
        **UNTHROTTLED,
    )
    web.wait_ready()
    with ThreadPoolExecutor(12) as pool:
        emails = list(pool.map(lambda _: web.sign_up(new_email("pool")), range(12)))
    results: list[int] = []
    probes: list[tuple[int, float]] = []

    def one_login(email: str) -> None:
        with web.new_client() as client:
            results.append(log_in(client, email).status_code)

    threads = [threading.Thread(target=one_login, args=(emails[n % 12],)) for n in range(60)]
    with web.new_client() as probe:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            began = time.perf_counter()
            status = probe.get("/readyz").status_code
            probes.append((status, time.perf_counter() - began))
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    print(f"60 logins; /readyz {len(probes)} times, slowest {max(t for _, t in probes):.3f} s")
    assert results == [201] * 60
    assert len(probes) >= 10
    assert [status for status, _ in probes] == [200] * len(probes)
    assert max(seconds for _, seconds in probes) < 1  # under the readiness timeout (2 s)
    assert statistics.median(seconds for _, seconds in probes) < 0.2
