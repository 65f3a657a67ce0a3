"""Render the default project, install it from its locks as its README says, and run its own
lint and test suite against real PostgreSQL and Redis (TEST_DATABASE_URL / TEST_REDIS_URL)."""

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

import pytest

from .conftest import BIN, TEMPLATE, render


def run(args: list[str], cwd: Path, timeout: float, venv_on_path: bool = True) -> None:
    """Run a command in the project; with `venv_on_path=False`, as a new shell would."""
    env = without_venv()
    if venv_on_path:
        env["PATH"] = f"{cwd / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("generated"))
    # The README's install step, word for word: `make install` runs exactly these.
    run(["uv", "venv", "--python", "3.11", ".venv"], project, 120)
    run(["uv", "pip", "sync", "--python", ".venv", "requirements-dev.lock"], project, 600)
    run(["uv", "pip", "install", "--python", ".venv", "--no-deps", "-e", "."], project, 120)
    return project


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


REDIS_SERVER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_db(installed: Path) -> Iterator[int]:
    """A Redis logical DB of its own (scripts/redis_db.py), run by the project's interpreter."""
    claim = [str(installed / ".venv" / "bin" / "python"), str(TEMPLATE / "scripts" / "redis_db.py")]
    done = subprocess.run([*claim, "claim", REDIS_SERVER_URL], check=True, capture_output=True)
    db = int(done.stdout)
    try:
        yield db
    finally:
        subprocess.run([*claim, "release", REDIS_SERVER_URL, str(db)], check=True)


def test_readme_quick_start_runs_the_service(installed: Path, redis_db: int) -> None:
    """`make release` then `make run` with two workers and two clocks, as the generated README
    says, against a fresh database and a Redis database of its own: every process starts, and
    both workers' metrics can be scraped."""
    admin = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    database = f"quickstart_{secrets.token_hex(4)}"
    port = free_port()
    metrics = free_ports(2)
    env_file = installed / ".env"
    original = env_file.read_text()
    lines = dict(line.split("=", 1) for line in original.splitlines())
    lines.update(
        DATABASE_URL=urlunsplit(urlsplit(admin)._replace(path=f"/{database}")),
        REDIS_URL=f"{REDIS_SERVER_URL.rstrip('/')}/{redis_db}",
        PORT=str(port),
        WORKER_METRICS_PORT=str(metrics),
        TASK_QUEUE=database,
    )
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    run(["psql", admin, "-c", f'CREATE DATABASE "{database}"'], installed, 30)
    honcho = None
    try:
        run(["make", "release"], installed, 120)
        honcho = subprocess.Popen(
            ["make", "run", "CONCURRENCY=web=1,worker=2,clock=2"],
            cwd=installed,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r)["status"] == "ready"
                    break
            except OSError:
                assert time.monotonic() < deadline, "web did not become ready"
                time.sleep(0.3)
        for worker_port in (metrics, metrics + 1):  # worker.1 and worker.2, one port each
            while True:
                try:
                    url = f"http://127.0.0.1:{worker_port}/metrics"
                    with urllib.request.urlopen(url, timeout=2) as r:
                        assert b"celery_queue_depth" in r.read()
                        break
                except OSError:
                    assert time.monotonic() < deadline, f"no worker metrics on {worker_port}"
                    time.sleep(0.3)
        assert honcho.poll() is None, "a process exited, and honcho stopped them all"
    finally:
        if honcho is not None:
            os.killpg(honcho.pid, signal.SIGTERM)
            honcho.wait(30)
        env_file.write_text(original)
        run(
            ["psql", admin, "-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
            installed,
            30,
        )


def without_venv() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    return env


def free_port() -> int:
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
