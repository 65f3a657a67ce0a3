"""Render the default project, install it from its locks as its README says, and run its own
lint and test suite: against the PostgreSQL and Redis at TEST_DATABASE_URL / TEST_REDIS_URL (or
throwaway ones when nothing answers there), and again on throwaway servers only. Then its README's
quick start, on a machine where no PostgreSQL or Redis answers at the project's URLs."""

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from .conftest import BIN, render


def run(args: list[str], cwd: Path, timeout: float, venv_on_path: bool = True, **env: str) -> None:
    """Run a command in the project, with `env` added; with `venv_on_path=False`, as a new shell
    would."""
    environment = {**without_venv(), **env}
    if venv_on_path:
        environment["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    # Not under pytest's private (0700) temporary folder: as root, the project's PostgreSQL runs
    # as nobody, who must reach its binaries in .venv and its data.
    where = Path(tempfile.mkdtemp(prefix="generated-"))
    where.chmod(0o755)
    project = render(where)
    # The README's install step, word for word: `make install` runs exactly these.
    run(["uv", "venv", "--python", "3.11", ".venv"], project, 120)
    run(["uv", "pip", "sync", "--python", ".venv", "requirements-dev.lock"], project, 600)
    run(["uv", "pip", "install", "--python", ".venv", "--no-deps", "-e", "."], project, 120)
    yield project
    shutil.rmtree(where)


def test_generated_project_is_lint_clean(installed: Path) -> None:
    run(["ruff", "check", "."], installed, 120)
    run(["ruff", "format", "--check", "."], installed, 120)
    run(["mypy"], installed, 300)


def test_generated_project_passes_its_own_suite(installed: Path, tmp_path: Path) -> None:
    began = time.monotonic()
    report = tmp_path / "junit.xml"
    run(["pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"], installed, 900)
    print(f"generated suite: {time.monotonic() - began:.0f} s")
    # The fuzzer ran in that suite, on this default render, and passed (not skipped).
    cases = ElementTree.parse(report).getroot().iter("testcase")  # noqa: S314 - pytest's own
    fuzz = [case for case in cases if case.get("classname") == "tests.test_fuzz"]
    assert fuzz, "tests/test_fuzz.py did not run"
    for case in fuzz:
        assert not list(case), f"{case.get('name')}: {[child.tag for child in case]}"


LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads Linux's /proc")


def processes_in(project: Path) -> list[str]:
    """The processes at work in `project` (all that `make run` starts, servers included) or
    running a program from it, as Linux's /proc shows them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = os.readlink(proc / "cwd")
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue  # not a process, gone already, or not ours to look at
        if cwd.startswith(str(project)) or str(project) in args:
            found.append(f"{proc.name}: {args}")
    return found


# The generated tests that use PostgreSQL and Redis in every way the others do: migrations and
# databases made and dropped, sessions and locks, connections cut, stalled and refused through
# the TCP proxy, processes killed mid-task, drained, restarted, a clock failing over. The rest
# of the suite (fuzzing, accounts, tracing...) uses the servers no differently and runs on them
# in the run above: all of it again on throwaway servers took 9½ minutes here.
ON_THROWAWAY_SERVERS = ["test_faults.py", "test_redelivery.py", "test_clock.py",
                        "test_shutdown.py", "test_worker.py", "test_compliance.py",
                        "test_health.py", "test_release.py", "test_sessions.py"]  # fmt: skip


@LINUX_PROC
def test_generated_suite_passes_on_throwaway_servers(installed: Path) -> None:
    """TEST_SERVICES=embedded: the tests above on servers from the dev wheels, with the
    machine's own out of reach. Afterwards no server runs, and its data folder is gone."""
    chosen = [f"tests/{name}" for name in ON_THROWAWAY_SERVERS]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # for PostgreSQL as nobody, as above
        began = time.monotonic()
        run(
            ["pytest", "-q", "-p", "no:cacheprovider", *chosen],
            installed,
            900,
            TEST_SERVICES="embedded",
            TEST_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
            TEST_REDIS_URL=f"redis://127.0.0.1:{free_port()}",  # nothing answers at either
            TEST_AMQP_URL="",  # RabbitMQ stays opt-in; the run above covers it
            TMPDIR=tmp,
        )
        print(f"generated suite on throwaway servers: {time.monotonic() - began:.0f} s")
        servers = [p for p in processes_in(installed) if "site-packages" in p]
        assert not servers, servers
        assert not list(Path(tmp).glob("test-services-*"))
        assert not [path for path in Path(tmp).rglob("*") if path.is_socket()]


def request(url: str, body: object = None, cookie: str = "") -> tuple[Message, Any]:
    """One JSON request; the response's headers and body."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Cookie": cookie}
    call = urllib.request.Request(url, data, headers)  # noqa: S310 (http://127.0.0.1 only)
    with urllib.request.urlopen(call, timeout=5) as response:  # noqa: S310
        return response.headers, json.load(response)


ACCOUNT = {"email": "quickstart@example.com", "password": "a long and unguessable pass phrase"}


def sign_up_log_in_and_post_note(base: str) -> tuple[str, int]:
    """Make an account, log in and post a note; the session cookie and the note's id."""
    request(f"{base}/api/v1/users", ACCOUNT)
    headers, _ = request(f"{base}/api/v1/session", ACCOUNT)
    cookie = str(headers["Set-Cookie"]).split(";", 1)[0]
    _, note = request(f"{base}/api/v1/notes", {"title": "hi", "body": "one two three"}, cookie)
    return cookie, int(note["id"])


def serves_worker_metrics(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as response:
        return b"celery_queue_depth" in response.read()


def wait_for(check: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError):  # not listening yet, or a 503 while it starts
            if check():
                return
        assert time.monotonic() < deadline, f"gave up waiting for {check}"
        time.sleep(0.3)


@contextlib.contextmanager
def make_run(project: Path, base: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`make run` from a plain shell (no venv on PATH) until the service is ready; at the end,
    Ctrl-C, a SIGINT to its process group as a terminal sends it, and nothing it started is
    left running."""
    with (project / "make-run.log").open("ab") as log:
        make = subprocess.Popen(
            ["make", "run", *args],
            cwd=project,
            env=without_venv(),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        wait_for(lambda: request(f"{base}/readyz")[1]["status"] == "ready", 90)
        yield make
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.wait(60)
        wait_for(lambda: not processes_in(project), 15)


@LINUX_PROC
def test_readme_quick_start_runs_the_service_on_a_bare_machine(installed: Path) -> None:
    """The generated README's quick start, `make run`, with nothing answering at .env's URLs: it
    starts PostgreSQL and Redis itself, runs release and the service (here with two workers and
    two clocks, every one of which starts, and both workers are scraped); their data outlives
    it, and the second run finds the note and the session of the first."""
    base = f"http://127.0.0.1:{free_port()}"
    metrics = free_ports(2)
    env_file = installed / ".env"
    original = env_file.read_text()
    env = dict(line.split("=", 1) for line in original.splitlines())
    env.update(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/quickstart",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PORT=base.rsplit(":", 1)[1],
        WORKER_METRICS_PORT=str(metrics),
    )
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    try:
        with make_run(installed, base, "CONCURRENCY=web=1,worker=2,clock=2") as make:
            for port in (metrics, metrics + 1):  # worker.1 and worker.2, one port each
                wait_for(functools.partial(serves_worker_metrics, port), 30)
            cookie, note_id = sign_up_log_in_and_post_note(base)
            note_url = f"{base}/api/v1/notes/{note_id}"
            wait_for(lambda: request(note_url, cookie=cookie)[1]["enriched"], 30)  # by a worker
            assert make.poll() is None, "a process exited, and honcho stopped them all"
        with make_run(installed, base):  # the note and the session were kept
            _, note = request(note_url, cookie=cookie)
            assert (note["enriched"], note["word_count"]) == (True, 3)
            _, session = request(f"{base}/api/v1/session", cookie=cookie)
            assert session["user"]["email"] == ACCOUNT["email"]
    finally:
        env_file.write_text(original)
        shutil.rmtree(installed / ".data", ignore_errors=True)


def without_venv() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    return env


def free_port() -> int:
    """A port of this machine where nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    while True:
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("0.0.0.0", port))  # noqa: S104 - where the workers bind
        except OSError:
            continue
        return first
