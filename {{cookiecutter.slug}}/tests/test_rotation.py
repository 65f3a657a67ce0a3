"""Credentials from files rotate while web, worker and clock serve (DATABASE_URL_FILE,
REDIS_URL_FILE): nothing restarts, nothing fails, and the old password is then refused.

The servers here check passwords for real, which the run's own may not (a local PostgreSQL
often trusts every login, and Redis's default user has none): a PostgreSQL with scram-sha-256
and a Redis with an ACL user, both started for this module (dev/services.py).

The database password follows the zero-downtime procedure of the README: two login roles take
turns (their sessions act as one owner role), because a PostgreSQL role has one password at a
time. Redis users hold several passwords at once, so there one user suffices.
"""

import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from psycopg import sql

from dev import services

from .conftest import PASSWORD, Process, Web, free_port, launch, new_email, release, wait_until

OWNER = "notes_owner"
ROLES = ("notes_blue", "notes_green")
REDIS_USER = "notes"


@dataclass
class CheckedServers:
    postgres_port: int
    postgres_admin: str  # superuser URL
    redis_port: int
    redis_admin: redis.Redis
    passwords: dict[str, str] = field(default_factory=dict)  # role (or Redis user): current one

    def database_url(self, role: str, password: str | None = None) -> str:
        password = password or self.passwords[role]
        return f"postgresql://{role}:{password}@127.0.0.1:{self.postgres_port}/notes"

    def redis_url(self, password: str, db: int = 0) -> str:
        return f"redis://{REDIS_USER}:{password}@127.0.0.1:{self.redis_port}/{db}"

    def set_role_password(self, role: str, password: str) -> None:
        with psycopg.connect(self.postgres_admin, autocommit=True) as conn:
            query = sql.SQL("ALTER ROLE {} PASSWORD {}")
            conn.execute(query.format(sql.Identifier(role), sql.Literal(password)))
        self.passwords[role] = password


# Not pytest's tmp_path for the servers and the credential files: its base folder is shared by
# every pytest run of this user, and a run starting elsewhere prunes older ones, live or not.
PRIVATE = "test-rotation-"


@pytest.fixture(scope="module")
def checked() -> Iterator[CheckedServers]:
    with tempfile.TemporaryDirectory(prefix=PRIVATE) as folder:
        yield from _checked(Path(folder))


def _checked(tmp: Path) -> Iterator[CheckedServers]:
    admin_password = secrets.token_urlsafe(16)
    pg_port, redis_port = free_port(), free_port()
    with (
        services.start_postgres(
            tmp / "postgres" / "data", pg_port, durable=False, password=admin_password
        ),
        services.start_redis(tmp / "redis" / "data", redis_port, durable=False),
    ):
        admin = f"postgresql://postgres:{admin_password}@127.0.0.1:{pg_port}/postgres"
        servers = CheckedServers(pg_port, admin, redis_port, redis.Redis(port=redis_port))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(OWNER)))
            for role in ROLES:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                        sql.Identifier(role), sql.Identifier(OWNER)
                    )
                )
                # Whichever role logs in acts as the owner: tables made by a migration run as
                # one role belong to both.
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET role = {}").format(
                        sql.Identifier(role), sql.Literal(OWNER)
                    )
                )
            conn.execute(sql.SQL("CREATE DATABASE notes OWNER {}").format(sql.Identifier(OWNER)))
        for role in ROLES:
            servers.set_role_password(role, secrets.token_urlsafe(16))
        password = secrets.token_urlsafe(16)
        servers.redis_admin.acl_setuser(
            REDIS_USER,
            enabled=True,
            passwords=[f"+{password}"],
            keys="*",
            channels="*",
            commands=["+@all"],
        )
        servers.passwords[REDIS_USER] = password
        # From here on a connection without the user's password is refused: the default user
        # is off. The admin client keeps its connection, logged in before.
        servers.redis_admin.acl_setuser("default", enabled=False, reset_passwords=False)
        yield servers
        servers.redis_admin.close()


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, as the kubelet swaps a projected volume's files."""
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    staged.write_text(text + "\n")
    staged.replace(path)


@dataclass
class Load:
    """Requests to a web, a few at a time, until stopped: each signed-in client posts a note and
    reads it back, and /readyz is asked between. Every answer that is not a success is kept."""

    web: Web
    clients: int = 3
    failures: list[str] = field(default_factory=list)
    notes: list[tuple[float, httpx.Client, int]] = field(default_factory=list)
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "Load":
        for _ in range(self.clients):
            client = self._signed_in()
            thread = threading.Thread(target=self._run, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _signed_in(self) -> httpx.Client:
        email, client = new_email("rotation"), self.web.new_client()
        for path in ("/api/v1/users", "/api/v1/session"):
            response = client.post(path, json={"email": email, "password": PASSWORD})
            assert response.status_code == 201, response.text
        return client

    def _check(self, response: httpx.Response, expected: int) -> httpx.Response:
        self.requests += 1
        if response.status_code != expected:
            path = response.request.url.path
            self.failures.append(f"{response.status_code} {path}: {response.text[:200]}")
        return response

    def _run(self, client: httpx.Client) -> None:
        while not self._stop.is_set():
            try:
                made = self._check(
                    client.post("/api/v1/notes", json={"title": "t", "body": "one two three"}),
                    201,
                )
                if made.status_code == 201:
                    note = made.json()["id"]
                    self.notes.append((time.monotonic(), client, note))
                    self._check(client.get(f"/api/v1/notes/{note}"), 200)
                self._check(client.get("/readyz"), 200)
            except httpx.TransportError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)  # light load: a few requests a second from each client

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def enriched_after(self, moment: float, count: int = 3) -> bool:
        """Whether the first `count` notes posted after `moment` have had their task run: jobs
        enqueued after it still complete."""
        posted = [(client, note) for at, client, note in list(self.notes) if at > moment][:count]
        return len(posted) == count and all(
            client.get(f"/api/v1/notes/{note}").json().get("enriched") for client, note in posted
        )


def serve(
    checked: CheckedServers,
    base_env: dict[str, str],
    folder: Path,
    running: list[Process],
    redis_db: int,
    **extra: str,
) -> tuple[Web, Process, Process, dict[str, Path]]:
    """Release, then web, worker and clock whose database and Redis credentials are files in
    `folder`; each process is added to `running`, for the caller to stop."""
    files = {"database": folder / "database-url", "redis": folder / "redis-url"}
    write_atomically(files["database"], checked.database_url(ROLES[0]))
    write_atomically(files["redis"], checked.redis_url(checked.passwords[REDIS_USER], redis_db))
    env = {k: v for k, v in base_env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "DATABASE_URL_FILE": str(files["database"]),
        "REDIS_URL_FILE": str(files["redis"]),
        "HEARTBEAT_SECONDS": "1",
        "CLOCK_LOCK_TIMEOUT_SECONDS": "5",
        **extra,
    }
    release(env)
    web, worker, clock = (launch(kind, env) for kind in ("web", "worker", "clock"))
    assert isinstance(web, Web)
    running.extend([web, worker, clock])
    web.wait_ready()
    return web, worker, clock, files


@pytest.fixture
def serving(
    checked: CheckedServers, base_env: dict[str, str]
) -> Iterator[Callable[..., tuple[Web, Process, Process, dict[str, Path]]]]:
    """`serving(redis_db, **env)`: web, worker and clock of the test's own (see `serve`)."""
    running: list[Process] = []
    with tempfile.TemporaryDirectory(prefix=PRIVATE) as folder:
        yield lambda redis_db=1, **extra: serve(
            checked, base_env, Path(folder), running, redis_db, **extra
        )
        for process in running:
            process.kill_group()


@pytest.fixture(scope="module")
def mended(
    checked: CheckedServers, base_env: dict[str, str]
) -> Iterator[tuple[Web, Process, Process, dict[str, Path]]]:
    """Web, worker and clock shared by the tests that break a credential and mend it: each
    test leaves them serving, which the next one checks again before it breaks anything."""
    running: list[Process] = []
    with tempfile.TemporaryDirectory(prefix=PRIVATE) as folder:
        yield serve(checked, base_env, Path(folder), running, redis_db=3)
        for process in running:
            process.kill_group()


def heartbeats(checked: CheckedServers) -> int:
    with psycopg.connect(checked.database_url(ROLES[1])) as conn:
        row = conn.execute("SELECT count(*) FROM heartbeats").fetchone()
    return int(row[0]) if row else 0


def refused(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return "password authentication failed" in str(exc)
    return False


def still_running(*processes: Process) -> None:
    for process in processes:
        assert process.popen.poll() is None, f"{process.kind} exited: {process.lines[-20:]}"


def wait_for_jobs(load: Load, moment: float, worker: Process) -> None:
    wait_until(
        lambda: load.enriched_after(moment),
        30,
        interval=0.5,
        describe=lambda: (
            f"notes enriched; failures {load.failures[:5]}; worker {worker.lines[-15:]}"
        ),
    )


def test_database_password_rotates_while_web_worker_and_clock_serve(
    checked: CheckedServers, serving: Callable[..., Any]
) -> None:
    # Pool of 1 plus overflow: under three clients the web keeps opening new connections, and
    # the worker's pool processes are replaced every few tasks, each opening its own.
    web, worker, clock, files = serving(
        redis_db=1, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="3", WORKER_MAX_TASKS_PER_CHILD="5"
    )
    old, new = ROLES
    old_url = checked.database_url(old)
    pids = [p.popen.pid for p in (web, worker, clock)]
    with Load(web) as load:
        wait_for_jobs(load, 0, worker)
        # The new credential first, on the role nobody uses; then the file; then, once every
        # process has had time to log in afresh, the old password goes.
        checked.set_role_password(new, secrets.token_urlsafe(16))
        write_atomically(files["database"], checked.database_url(new))
        switched = time.monotonic()
        wait_for_jobs(load, switched, worker)
        checked.set_role_password(old, secrets.token_urlsafe(16))
        retired = time.monotonic()
        beats_at_retirement = heartbeats(checked)
        assert refused(old_url)  # the server no longer takes the old password
        wait_for_jobs(load, retired, worker)  # the worker's new pool processes logged in as `new`
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    assert load.requests > 50
    still_running(web, worker, clock)
    assert [p.popen.pid for p in (web, worker, clock)] == pids
    assert web.client.get("/readyz").status_code == 200  # a new login, with the new password
    # The clock kept enqueueing and the worker kept storing heartbeats after the old password went.
    assert heartbeats(checked) > beats_at_retirement


def test_redis_password_rotates_while_web_worker_and_clock_serve(
    checked: CheckedServers, serving: Callable[..., Any]
) -> None:
    web, worker, clock, files = serving(redis_db=2)
    old = checked.passwords[REDIS_USER]
    new = secrets.token_urlsafe(16)
    pids = [p.popen.pid for p in (web, worker, clock)]
    with Load(web) as load:
        wait_for_jobs(load, 0, worker)
        # A Redis user may hold two passwords: add the new, switch the file, drop the old.
        checked.redis_admin.acl_setuser(REDIS_USER, enabled=True, passwords=[f"+{new}"])
        write_atomically(files["redis"], checked.redis_url(new, 2))
        switched = time.monotonic()
        wait_for_jobs(load, switched, worker)
        checked.redis_admin.acl_setuser(REDIS_USER, enabled=True, passwords=[f"-{old}"])
        checked.passwords[REDIS_USER] = new
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=checked.redis_port, username=REDIS_USER, password=old).ping()
        time.sleep(2)
    assert load.failures == [], load.failures[:10]
    still_running(web, worker, clock)
    # Every connection opened with the old password is cut, as a Redis restart would: web,
    # worker and clock all log in again, with the file's password, and carry on. The web's pool
    # holds several cut connections now (the load's clients overlapped). A command sent on one
    # is sent again at once on a new connection (core/redis_client.py), so no request fails:
    # not even the first, whose readiness ping takes the connection the pool used last.
    killed = time.monotonic()
    checked.redis_admin.client_kill_filter(user=REDIS_USER)
    assert web.client.get("/readyz").status_code == 200
    with Load(web) as load:
        wait_for_jobs(load, killed, worker)
        time.sleep(2)
    assert load.failures == [], load.failures
    clock_lines = len(clock.lines)
    wait_until(lambda: any("task sent" in line for line in clock.lines[clock_lines:]), 15)
    still_running(web, worker, clock)
    assert [p.popen.pid for p in (web, worker, clock)] == pids


@pytest.mark.parametrize("which", ["database", "redis"])
@pytest.mark.parametrize("fault", ["vanished", "garbage", "wrong password"])
def test_a_broken_credential_file_is_named_by_readiness_and_heals(
    checked: CheckedServers,
    mended: tuple[Web, Process, Process, dict[str, Path]],
    which: str,
    fault: str,
) -> None:
    web, worker, clock, files = mended
    still_running(web, worker, clock)
    wait_until(lambda: web.client.get("/readyz").status_code == 200, 5)
    client = web.signed_in(web.sign_up(new_email("broken")))
    good = files[which].read_text()
    garbage = "s3cr3t-looking garbage that must never be echoed"
    if fault == "vanished":
        files[which].unlink()
    elif fault == "garbage":
        write_atomically(files[which], garbage)
    elif which == "database":
        write_atomically(files[which], checked.database_url(ROLES[0], "not-the-password"))
    else:
        write_atomically(files[which], checked.redis_url("not-the-password", 3))  # mended's db
    dependency = {"database": "postgres", "redis": "redis"}[which]
    variable = {"database": "DATABASE_URL_FILE", "redis": "REDIS_URL_FILE"}[which]
    expected = {
        "vanished": f"error: {variable}: file not found",
        "garbage": f"error: {variable}: not a ",
        "wrong password": "error: authentication failed",
    }[fault]
    started = time.monotonic()
    answer = web.client.get("/readyz")
    assert time.monotonic() - started < 3
    assert answer.status_code == 503, answer.text
    assert answer.json()["checks"][dependency].startswith(expected), answer.text
    assert answer.json()["checks"][{"postgres": "redis", "redis": "postgres"}[dependency]] == "ok"
    assert garbage not in answer.text
    assert "not-the-password" not in answer.text
    # The connections already open carry on: a signed-in user still reads and writes. (A request
    # that happens to need a new connection gets the 503 of an unreachable dependency, never a
    # 500; the next one, finding an open connection again, is served.)
    answers: list[int] = []

    def served() -> bool:
        made = client.post("/api/v1/notes", json={"title": "t", "body": "still served"})
        answers.append(made.status_code)
        if made.status_code == 201:
            answers.append(client.get(f"/api/v1/notes/{made.json()['id']}").status_code)
        return answers[-1] == 200

    wait_until(served, 5, interval=0.2, describe=lambda: f"a note served; answers {answers}")
    assert set(answers) <= {200, 201, 503}, answers
    write_atomically(files[which], good.rstrip("\n"))
    wait_until(lambda: web.client.get("/readyz").status_code == 200, 5)
    still_running(web, worker, clock)
    assert all(garbage not in "\n".join(p.lines) for p in (web, worker, clock))


@pytest.mark.parametrize("which", ["database", "redis"])
def test_a_request_that_needs_a_new_connection_meanwhile_gets_503_not_500(
    checked: CheckedServers, mended: tuple[Web, Process, Process, dict[str, Path]], which: str
) -> None:
    web, worker, clock, files = mended
    still_running(web, worker, clock)
    wait_until(lambda: web.client.get("/readyz").status_code == 200, 5)
    client = web.signed_in(web.sign_up(new_email("cut")))
    good = files[which].read_text()
    files[which].unlink()
    # The open connections are cut too: the next ones must be made, and cannot be.
    if which == "database":
        with psycopg.connect(checked.postgres_admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [ROLES[0]],
            )
    else:
        checked.redis_admin.client_kill_filter(user=REDIS_USER)
    answers = [client.get("/api/v1/session").status_code for _ in range(3)]
    answers += [client.get("/api/v1/heartbeats").status_code for _ in range(3)]
    assert 500 not in answers, answers
    assert 503 in answers, answers
    write_atomically(files[which], good.rstrip("\n"))
    wait_until(lambda: client.get("/api/v1/session").status_code == 200, 5)
    still_running(web, worker, clock)
