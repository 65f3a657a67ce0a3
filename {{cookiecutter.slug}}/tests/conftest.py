"""Run the service the way a platform does: real PostgreSQL and Redis, and real OS processes
started from the Procfile, driven over HTTP and signals.

TEST_DATABASE_URL: a PostgreSQL server where the tests may create and drop databases
    (default postgresql://postgres@127.0.0.1:5432/postgres); each run gets a fresh database.
TEST_REDIS_URL: a Redis server (default redis://127.0.0.1:6379); each run claims a free
    logical database (1-15) for itself, so runs side by side do not see each other's keys.
TEST_SERVICES: `auto` (default): where nothing answers at one of those two URLs, the run starts
    a throwaway server of its own (dev/services.py) and removes it at the end. `embedded`: always
    throwaway servers; `external`: only the URLs, never a server of its own.
TEST_AMQP_URL: a RabbitMQ server (e.g. amqp://guest:guest@127.0.0.1:5672//). When set, the
    worker tests run on it too, as well as on Redis; each run uses its own queue.

The tests run in several processes at once (pytest-xdist: `-n auto` in pyproject.toml, two per
core, see pytest_xdist_auto_num_workers): each of them is a run of its own as described above,
with its own database, Redis database, queue, mail sink and ports. Tests marked `timing` compare
durations: they run last, while the other test processes wait, a second run's on the same
machine too (see `MachineLock`).
"""

import contextlib
import fcntl
import functools
import gzip
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis
from aiosmtpd.controller import Controller
from celery import Celery
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from dev import services

# The run caches bytecode whatever the shell says. With PYTHONDONTWRITEBYTECODE (some CI machines
# and container images set it), each of the run's test processes compiled pytest's plugins, their
# imports and the rewritten test modules again, every run: 4 to 5 s of CPU each. The processes
# the tests start write theirs anyway: base_env does not pass the variable on. Set here, before
# pytest-xdist starts the test processes, which inherit the environment.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

ROOT = Path(__file__).resolve().parent.parent
# The tests' clients all speak plain HTTP to local processes. httpx builds a TLS context for each
# client it makes (httpx.get and .post make one per call) and reads the whole CA bundle into it:
# 21 ms of CPU each, some 750 times a run, and inside durations that timing tests compare.
# One context, made once, serves them all: `verify=PLAIN_HTTP` wherever a client is made.
PLAIN_HTTP = ssl.create_default_context()
# A web's kept-alive connections: uvicorn closes one after 5 s idle, httpx reuses one for 5 s by
# default, and a request sent just as the server closes it fails ("Server disconnected without
# sending a response", seen once with two runs at once). The clients let go first.
KEEP_ALIVE = httpx.Limits(keepalive_expiry=2)
PROCFILE = {
    name.strip(): command.strip()
    for name, command in (
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
}
ADMIN_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_SERVER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
TEST_SERVICES = os.environ.get("TEST_SERVICES", "auto")
AMQP_URL = os.environ.get("TEST_AMQP_URL")


# Ports for the processes to listen on: below the kernel's ephemeral range, which every outgoing
# connection (to PostgreSQL, Redis, the web itself) draws from, so none of those can take one
# between this choice and the process binding it; at random; and claimed, for as long as this
# test process lives, by a lock on a file named for it, which every test process of every run
# on the machine respects. Unclaimed, two of them once chose one port within the second before
# their webs bound it: the one that lost exited, and its test talked to the other test's web.
_claimed: dict[int, Any] = {}


def free_port() -> int:
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports, each free and claimed (a worker takes the next
    port of its range when its first is taken: that one is claimed too)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        first = 10000 + secrets.randbelow(low - 10000 - count)
        for port in range(first, first + count):
            if not _claim(port):
                for taken in range(first, port):  # let go of the range's first ones
                    _claimed.pop(taken).close()
                break
        else:
            return first


def _claim(port: int) -> bool:
    if port in _claimed:
        return False
    claim = (MachineLock.folder("ports") / str(port)).open("a")
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for host in ("0.0.0.0", "127.0.0.1"):  # web binds on every address
            with socket.socket() as sock:
                sock.bind((host, port))
    except OSError:  # claimed by another test process, or in use
        claim.close()
        return False
    _claimed[port] = claim
    return True


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two test processes per core, as most of a test's time is spent waiting on the
    processes it started; none (all in this one) when only named tests are run."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    if config.args and all("::" in arg for arg in config.args):
        return 0
    return 2 * len(os.sched_getaffinity(0))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timing: compares durations; runs while the run's other test processes wait",
    )


def is_timing(item: pytest.Item) -> bool:
    return item.get_closest_marker("timing") is not None


def timing_ids_file(controller_pid: int) -> Path:
    return MachineLock.folder() / f"timing-tests-of-run-{controller_pid}.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `timing` tests last, one after another: they hold the machine once, not each time.
    Side by side, each test process also tells the run's scheduler (below) which they are:
    xdist hands that only the tests' ids, and it runs in the test processes' parent."""
    items.sort(key=is_timing)  # stable
    if hasattr(config, "workerinput") and config.getoption("dist") == "worksteal":
        ids = timing_ids_file(os.getppid())
        written = ids.with_suffix(f".{os.getpid()}")
        written.write_text(json.dumps([item.nodeid for item in items if is_timing(item)]))
        written.replace(ids)  # whole, whichever test process writes it last


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "worksteal":
        return None  # another --dist, asked for on the command line: xdist's own
    # xdist ships no type hints. Imported here: only side by side, only in the run's parent.
    from xdist.scheduler import WorkStealingScheduling  # type: ignore[import-untyped]
    from xdist.scheduler.worksteal import MIN_PENDING  # type: ignore[import-untyped]

    class TimingLast(WorkStealingScheduling):  # type: ignore[misc]
        """xdist's worksteal, with the `timing` tests held back until the other tests are all
        handed out and no test process has more than its last two left. Then they all go, in
        a row, to a process with none left, and wait only for those last few to end (see
        MachineLock), not for whatever long test another process was in the middle of, with
        more of its own queued behind it. Once they are out, none is taken (stolen) for
        another process: the others end as their queues do."""

        pending: list[int]  # indices into collection, as in the base class
        held: list[int] | None = None
        released = False

        @property
        def tests_finished(self) -> bool:
            return not self.held and bool(super().tests_finished)

        def check_schedule(self) -> None:
            if self.held is None and self.collection is not None:
                ids = timing_ids_file(os.getpid())
                timing = set(json.loads(ids.read_text())) if ids.exists() else set()
                ids.unlink(missing_ok=True)
                self.held = [i for i in self.pending if self.collection[i] in timing]
                self.pending = [i for i in self.pending if self.collection[i] not in timing]
            queues = self.node2pending
            idle = [n for n, q in queues.items() if len(q) < MIN_PENDING and not n.shutting_down]
            if self.released:
                for node in idle:
                    if self.pending:  # given back by a test process that crashed
                        self._send_tests(node, len(self.pending))
                    else:
                        node.shutdown()  # it ends with the tests it has
                return
            last_few = all(len(queue) <= MIN_PENDING for queue in queues.values())
            nothing_else = not self.pending and self.steal_requested_from_node is None
            if self.held and idle and last_few and nothing_else:
                self.pending, self.held, self.released = self.held, [], True
                self._send_tests(min(idle, key=lambda node: len(queues[node])), len(self.pending))
                self.check_schedule()
                return
            super().check_schedule()

    return TimingLast(config, log)


class MachineLock:
    """With tests running side by side, a run of `timing` tests waits until the tests in
    progress elsewhere are done, and no other test starts until that run is over: what they
    measure is the service, not their neighbours. A readers-writer lock on files shared by
    every run of this suite on the machine, so two runs at once keep their margins too; the
    turnstile lets a waiting `timing` test go before the tests that ask after it."""

    @staticmethod
    @functools.cache  # made once per test process
    def folder(*sub: str) -> Path:
        """The folder of the files every run of this suite on the machine shares."""
        folder = Path(tempfile.gettempdir(), "{{ cookiecutter.package }}-tests-timing", *sub)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def __init__(self) -> None:
        folder = self.folder()
        self.turnstile = (folder / "turnstile").open("a")
        self.machine = (folder / "machine").open("a")
        self.exclusive = False

    def before(self, timing: bool) -> None:
        if self.exclusive:
            return  # the run of timing tests goes on
        fcntl.flock(self.turnstile, fcntl.LOCK_EX)
        fcntl.flock(self.machine, fcntl.LOCK_EX if timing else fcntl.LOCK_SH)
        self.exclusive = timing
        if not timing:
            fcntl.flock(self.turnstile, fcntl.LOCK_UN)

    def after(self, next_is_timing: bool) -> None:
        if self.exclusive and next_is_timing:
            return
        fcntl.flock(self.machine, fcntl.LOCK_UN)
        fcntl.flock(self.turnstile, fcntl.LOCK_UN)
        self.exclusive = False


_machine: MachineLock | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    global _machine
    _machine = _machine or MachineLock()
    _machine.before(is_timing(item))
    try:
        return (yield)
    finally:
        _machine.after(nextitem is not None and is_timing(nextitem))


def error(response: httpx.Response) -> str:
    """The `detail` of an error answer, after checking it has the one error shape."""
    body = response.json()
    assert set(body) <= {"detail", "request_id", "errors"}, body
    assert body["request_id"] == response.headers["x-request-id"], body
    assert isinstance(body["detail"], str), body
    return str(body["detail"])


def wait_until(
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds,
    saying what it waited for (`describe()`, else the check itself)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout}s waiting for {describe() if describe else check}")
        time.sleep(interval)


class Process:
    """One Procfile process: its output lines are collected as they arrive."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.env = env
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            ["/bin/sh", "-c", PROCFILE[kind]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: teardown can kill children too
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.popen.stdout, self.stdout),
                (self.popen.stderr, self.stderr),
            )
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def lines(self) -> list[str]:
        return [*self.stdout, *self.stderr]

    def records(self) -> list[dict[str, Any]]:
        """Every output line parsed as JSON (a line that is not JSON fails the test here)."""
        return [json.loads(line) for line in self.lines]

    def wait_for_log(self, event: str, timeout: float = 10) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for line in self.lines:
                if event in line:
                    record: dict[str, Any] = json.loads(line)
                    if event in str(record.get("event")):
                        return record
            assert self.popen.poll() is None, f"{self.kind} exited: {self.lines[-20:]}"
            return None

        return wait_until(find, timeout)  # type: ignore[no-any-return]

    def send(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.popen.send_signal(sig)
        code = self.popen.wait(timeout)
        for reader in self.readers:  # every line it wrote is read before anyone looks
            reader.join(5)
        return code

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


PASSWORD = "a long and unguessable pass phrase 7"


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(6)}@example.com"


class Web(Process):
    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("web", env)
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.client = self.new_client()

    def new_client(self, cookies: httpx.Cookies | None = None) -> httpx.Client:
        """A client of this web; with `cookies`, it carries another client's session."""
        return httpx.Client(
            base_url=self.url, timeout=10, cookies=cookies, verify=PLAIN_HTTP, limits=KEEP_ALIVE
        )

    def sign_up(self, email: str | None = None, password: str = PASSWORD) -> str:
        email = email or new_email()
        response = self.client.post("/api/v1/users", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        return email

    def signed_in(self, email: str | None = None, password: str = PASSWORD) -> httpx.Client:
        """A new client with a session: of a new account, or of `email`'s."""
        email = email or self.sign_up()
        client = self.new_client()
        response = client.post("/api/v1/session", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        return client

    def wait_ready(self, timeout: float = 30) -> None:
        last = "no answer"

        def ready() -> bool:
            nonlocal last
            assert self.popen.poll() is None, f"web exited: {self.lines[-20:]}"
            try:
                response = self.client.get("/readyz")
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                return False
            last = response.text
            return response.status_code == 200

        wait_until(ready, timeout, describe=lambda: f"{self.url}/readyz; last answer: {last}")


@pytest.fixture(scope="session")
def servers() -> Iterator[services.Servers]:
    """The PostgreSQL and Redis servers of this run: at the TEST_* URLs, or throwaway ones."""
    with services.for_tests(ADMIN_DATABASE_URL, REDIS_SERVER_URL, TEST_SERVICES) as urls:
        yield urls


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards; yields its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(servers: services.Servers) -> Iterator[str]:
    with fresh_database(servers.postgres, "test_{{ cookiecutter.package }}") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(servers: services.Servers) -> Iterator[str]:
    admin = redis.Redis.from_url(servers.redis, db=0)
    for db in range(1, 16):
        if admin.set(f"test-claim:{db}", "1", nx=True, ex=3600):
            break
    else:
        pytest.fail("all Redis logical databases 1-15 are claimed by other test runs")
    url = f"{servers.redis.rstrip('/')}/{db}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()
    admin.delete(f"test-claim:{db}")


@pytest.fixture(scope="session")
def secret_key() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def task_queue() -> Iterator[str]:
    name = f"test-{secrets.token_hex(4)}"
    yield name
    if AMQP_URL:  # a RabbitMQ queue outlives its consumers: remove it
        with Celery(broker=AMQP_URL).connection_for_write() as conn, contextlib.suppress(Exception):
            conn.default_channel.queue_delete(name)


@pytest.fixture(scope="session", params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The broker URL, once for Redis and once for RabbitMQ (when TEST_AMQP_URL is set)."""
    if request.param == "redis":
        return redis_url
    if not AMQP_URL:
        pytest.skip("TEST_AMQP_URL is not set: no RabbitMQ to test against")
    return AMQP_URL


class MailSink:
    """An SMTP server's handler that takes every message and keeps none."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def broker_client(env: dict[str, str]) -> Celery:
    """A client of the broker set up as the service's own processes are, from their environment
    (its queue, and on Redis its key prefix): what it sends, their worker receives."""
    from {{ cookiecutter.package }}.core.broker import create_celery
    from {{ cookiecutter.package }}.core.settings import Settings

    fields = {name.lower(): value for name, value in env.items()}
    known = {name: value for name, value in fields.items() if name in Settings.model_fields}
    return create_celery(Settings.model_validate(known))


@pytest.fixture
def queue_env(migrated: dict[str, str], broker: str) -> Iterator[dict[str, str]]:
    """The environment on `broker`, with a queue of the test's own: its depth is the test's."""
    queue = f"test-{secrets.token_hex(4)}"
    yield {**migrated, "BROKER_URL": broker, "TASK_QUEUE": queue}
    if broker.startswith("amqp"):
        with Celery(broker=broker).connection_for_write() as conn, contextlib.suppress(Exception):
            conn.default_channel.queue_delete(queue)


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[str]:
    """The URL of an SMTP server that takes every mail: where the processes of the tests that
    are not about mail send theirs (tests/test_mail.py runs servers that keep them)."""
    controller = Controller(MailSink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield f"smtp://127.0.0.1:{controller.port}"
    controller.stop()


@pytest.fixture(scope="session")
def base_env(
    database_url: str, redis_url: str, secret_key: str, task_queue: str, mail_sink: str
) -> dict[str, str]:
    """A clean environment: only what a platform would set, nothing from the developer's shell."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(ROOT)),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secret_key,
        "SESSION_COOKIE_SECURE": "false",
        "TASK_QUEUE": task_queue,
        "RATE_LIMIT": "10000/minute",  # test_rate_limit.py sets its own
        "SMTP_URL": mail_sink,
        "EMAIL_VERIFICATION": "none",  # test_mail.py sets its own
    }


def release(env: dict[str, str]) -> str:
    """Run the Procfile's `release` to the end; its output. Fails the test if it fails."""
    result = subprocess.run(
        ["/bin/sh", "-c", PROCFILE["release"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


Outcome = tuple[int, str, float]  # exit status, output, seconds


@pytest.fixture
def load_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[dict[str, str]], Outcome]:
    """`load_config(env)`: what `load_settings()` makes of exactly this environment, run in the
    test process: its exit status (0: accepted), output and time. It is the first thing every
    process does (__main__.py), before it imports anything of its own; tests/test_settings.py
    starts processes that prove it. A case checked here costs no process start (a second of
    CPU each)."""
    from {{ cookiecutter.package }}.core.settings import load_settings

    def _load(env: dict[str, str]) -> Outcome:
        for name in list(os.environ):  # nothing from the developer's shell, as in a process
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        started = time.monotonic()
        try:
            load_settings()
            code: object = 0
        except SystemExit as stopped:
            code = stopped.code
        elapsed = time.monotonic() - started
        output = capsys.readouterr()
        assert isinstance(code, int), code
        return code, output.out + output.err, elapsed

    return _load


@pytest.fixture(scope="session")
def migrated(base_env: dict[str, str]) -> dict[str, str]:
    """Run the `release` process once; returns the environment the other processes use."""
    release(base_env)
    return base_env


def launch(kind: str, env: dict[str, str]) -> Process:
    if kind == "web":
        return Web({"PORT": str(free_port()), **env})
    if kind == "worker":
        # One port, claimed: not a range reaching into ports other tests have claimed.
        env = {"WORKER_METRICS_PORT": str(free_port()), "WORKER_METRICS_PORTS": "1", **env}
    return Process(kind, env)


@pytest.fixture
def start(migrated: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """Start a Procfile process: `start("worker", WORKER_CONCURRENCY="1")`. Killed at teardown."""
    running: list[Process] = []

    def _start(kind: str, **env: str) -> Process:
        process = launch(kind, {**migrated, **env})
        running.append(process)
        return process

    yield _start
    for process in running:
        process.kill_group()


@pytest.fixture(scope="module")
def shared(migrated: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """`shared("web", RATE_LIMIT="5/minute")`: a Procfile process with these settings, started by
    the first test of the module that asks and kept for the module's later tests that ask the
    same (a web also ready). Not longer: each holds database connections, and two runs side by
    side, four test processes each, kept PostgreSQL's 100 connections all taken.
    For tests that only make requests of it and look at what they made: a test that signals,
    stops or counts on a fresh process uses `start`. `copy=2` is a second one alike."""
    running: dict[tuple[str, int, tuple[tuple[str, str], ...]], Process] = {}

    def _shared(kind: str, copy: int = 1, **env: str) -> Process:
        key = (kind, copy, tuple(sorted(env.items())))
        if key not in running:
            running[key] = launch(kind, {**migrated, **env})
        process = running[key]
        assert process.popen.poll() is None, f"{kind} exited: {process.lines[-20:]}"
        if isinstance(process, Web):
            process.wait_ready()
        return process

    yield _shared
    for process in running.values():
        process.kill_group()


@pytest.fixture(scope="session")
def web(migrated: dict[str, str]) -> Iterator[Web]:
    """One web process shared by the tests that only make requests."""
    process = launch("web", migrated)
    assert isinstance(process, Web)
    process.wait_ready()
    yield process
    process.kill_group()


@pytest.fixture
def db(migrated: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the test database, for checking what the processes stored."""
    with psycopg.connect(migrated["DATABASE_URL"], autocommit=True) as conn:
        yield conn


class TcpProxy:
    """A TCP proxy in front of a real server, which a test can cut or stall: faults by real
    means, with no client monkeypatched. `refuse()` closes the port (connections refused) and
    drops open connections; `stall()` keeps accepting but forwards nothing; `slow(s)` delays
    every chunk by s seconds; `heal()` restores."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.mode = "pass"
        self.delay = 0.0
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by refuse()
            self._connections.append(client)
            if self.mode == "stall":
                continue  # accepted, never answered
            upstream = socket.create_connection(self.target)
            self._connections.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.mode == "stall":
                    time.sleep(0.05)  # hold the bytes: the peer sees silence
                time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def _drop_connections(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(OSError):
                # shutdown() wakes a pump blocked in recv(); close() alone would not.
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._connections.clear()

    def refuse(self) -> None:
        self.mode = "refuse"
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._listener.close()
            self._listener = None
        self._drop_connections()

    def stall(self) -> None:
        self.mode = "stall"

    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def heal(self) -> None:
        if self.mode == "stall":
            self._drop_connections()  # what was held is lost, as after a real network fault
        self.mode = "pass"
        self.delay = 0.0
        if self._listener is None:
            self._listen()

    def url(self, real_url: str) -> str:
        """`real_url` with its host and port replaced by the proxy's."""
        parts = urlsplit(real_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))

    def close(self) -> None:
        self.refuse()


def proxy_to(url: str) -> TcpProxy:
    """A TcpProxy in front of the server at `url`."""
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5432
    return TcpProxy((parts.hostname or "127.0.0.1", parts.port or default_port))


@pytest.fixture
def proxy() -> Iterator[Callable[[str], TcpProxy]]:
    """`proxy(url)`: a TcpProxy in front of the server at `url`, closed at teardown."""
    made: list[TcpProxy] = []

    def _proxy(url: str) -> TcpProxy:
        made.append(proxy_to(url))
        return made[-1]

    yield _proxy
    for each in made:
        each.close()


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: tuple[str, ...] = ()  # the trace id of each span it links to

    @property
    def instance(self) -> str:
        return str(self.resource["service.instance.id"])


def _values(pairs: Any) -> dict[str, Any]:
    def value(pair: KeyValue) -> Any:
        kind = pair.value.WhichOneof("value")
        return getattr(pair.value, kind) if kind else None

    return {pair.key: value(pair) for pair in pairs}


class Collector:
    """An OTLP/HTTP receiver, as the OpenTelemetry Collector is one: it decodes the protobuf
    export requests the processes send to `url` + /v1/traces and keeps their spans."""

    KINDS: ClassVar[dict[int, str]] = {
        1: "INTERNAL",
        2: "SERVER",
        3: "CLIENT",
        4: "PRODUCER",
        5: "CONSUMER",
    }

    def __init__(self) -> None:
        self.spans: list[Span] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.path == "/v1/traces", self.path
                collector.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = _values(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=self.KINDS.get(span.kind, str(span.kind)),
                            attributes=_values(span.attributes),
                            resource=resource,
                            links=tuple(link.trace_id.hex() for link in span.links),
                        )
                    )

    def wait_for(self, match: Callable[[Span], bool], timeout: float = 20) -> Span:
        """The first span received that matches; fails the test after `timeout` seconds."""
        found: Span = wait_until(lambda: next((s for s in self.spans if match(s)), None), timeout)
        return found

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """An OTLP/HTTP receiver the processes export their spans to (see tracing_env)."""
    receiver = Collector()
    yield receiver
    receiver.close()


def tracing_env(collector: Collector, **env: str) -> dict[str, str]:
    """Tracing on, exporting to `collector` a tenth of a second after a span ends (default 5 s)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100", **env}
