"""Logins per second of one generated web process: a password alone, and a password followed by
a code from an authenticator app (TOTP), each against the default argon2id parameters.

    .venv/bin/python bench/logins.py            # about 1 minute on 2 cores; writes bench/LOGINS.md

Renders and installs the template as bench/run.py does (its helpers), migrates a fresh database,
starts one web process, and signs up the accounts it needs. Then, for each kind of login, 20
clients log in back to back for `--seconds`, each login on a fresh connection, and count the
logins that ended with a session (201). A TOTP login is two requests (the password, answered
202, then the code); each account's authenticator is enrolled beforehand, and each login uses
an account of its own, since a code is good once. The codes are computed here from the secret
the API showed (RFC 6238, standard library only). Each client logs in to accounts of its
own (the account throttle counts the logins in flight for each account). The server's CPU time
per login is read from /proc, so other work on the machine counts less than in the wall-clock
rate.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from run import (
    BENCH_DIR,
    PACKAGE,
    PG_ARGS,
    Project,
    claim_redis_db,
    cpu_seconds,
    free_port,
    load_average,
    log,
    machine,
    release_redis_db,
    render_and_install,
    request,
    running,
    service_env,
    start,
    wait_ready,
)

PASSWORD = "a bench pass phrase of some length"  # noqa: S105 - a throw-away account
CLIENTS = 20


def totp_code(secret: bytes, offset: int = 0) -> str:
    counter = int(time.time()) // 30 + offset
    mac = hmac.digest(secret, struct.pack(">Q", counter), hashlib.sha1)
    start_at = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[start_at : start_at + 4])[0] & 0x7FFFFFFF
    return str(number % 1_000_000).zfill(6)


def cookie_of(response: http.client.HTTPResponse) -> str:
    """The name=value of the answer's (first) Set-Cookie."""
    return (response.getheader("set-cookie") or "").split(";", 1)[0]


def sign_up(port: int, email: str) -> None:
    answer = request(port, "POST", "/api/v1/users", {"email": email, "password": PASSWORD})
    assert answer.status == 201, answer.status


def enrol(port: int, email: str) -> bytes:
    """An account with an authenticator, confirmed with the previous step's code (so that the
    login's code, of this step or the next, is later than it)."""
    sign_up(port, email)
    login = request(port, "POST", "/api/v1/session", {"email": email, "password": PASSWORD})
    session = {"Cookie": cookie_of(login)}
    encoded = enrolment_secret(port, session)
    secret = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    code = {"code": totp_code(secret, -1)}
    confirm = request(port, "POST", "/api/v1/mfa/totp/confirm", code, session)
    assert confirm.status == 200, confirm.status
    return secret


def enrolment_secret(port: int, session: dict[str, str]) -> str:
    """POST /api/v1/mfa/totp and the base32 secret it shows (run.request drops the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/v1/mfa/totp", headers=session)
        response = conn.getresponse()
        assert response.status == 201, response.status
        return str(json.loads(response.read())["secret"])
    finally:
        conn.close()


@dataclass(frozen=True)
class Burst:
    logins: int
    seconds: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.logins / self.seconds

    @property
    def cpu_ms_per_login(self) -> float:
        return self.cpu_s / self.logins * 1000


def burst(pid: int, seconds: float, log_in: Callable[[], bool]) -> Burst:
    stop_at = time.perf_counter() + seconds
    counts = [0] * CLIENTS

    def client(n: int) -> None:
        while time.perf_counter() < stop_at:
            if log_in():
                counts[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    cpu0, began = cpu_seconds(pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Burst(sum(counts), time.perf_counter() - began, cpu_seconds(pid) - cpu0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=300, help="enrolled for the TOTP burst")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "LOGINS.md")
    opts = parser.parse_args()
    load_at_start = load_average()
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="twelve-logins-"))
        cleanup.callback(subprocess.run, ["rm", "-rf", str(workdir)], check=False)
        log(f"rendering and installing into {workdir}")
        root = render_and_install(workdir)
        python = root / ".venv" / "bin" / "python"
        redis_db = claim_redis_db(python, opts.redis_db)
        cleanup.callback(release_redis_db, python, redis_db)
        database = f"bench_logins_{os.getpid()}"
        env = service_env(database, free_port(), redis_db)
        # Every login comes from 127.0.0.1: the per-address throttle would measure itself.
        env["LOGIN_FAILURES_PER_ADDRESS"] = "100000/minute"
        project = Project(root, python, database, env, workdir / "logs")
        project.logs.mkdir()
        subprocess.run(["createdb", *PG_ARGS, database], check=True)
        cleanup.callback(subprocess.run, ["dropdb", *PG_ARGS, "--if-exists", database], check=False)
        release = [str(python), "-m", PACKAGE, "release"]
        subprocess.run(release, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        port = int(env["PORT"])
        with running(start(project, ["-m", PACKAGE, "web"], "web.log")) as web:
            wait_ready(web, port)
            # An account per client: the account throttle counts logins in flight, so 20
            # clients on one account would measure the throttle.
            plain: queue.SimpleQueue[str] = queue.SimpleQueue()
            for n in range(CLIENTS):
                sign_up(port, f"plain-{n}@example.com")
                plain.put(f"plain-{n}@example.com")

            def password_login() -> bool:
                email = plain.get()
                try:
                    body = {"email": email, "password": PASSWORD}
                    return request(port, "POST", "/api/v1/session", body).status == 201
                finally:
                    plain.put(email)

            log(f"enrolling {opts.accounts} accounts with an authenticator")
            enrolled: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
            for n in range(opts.accounts):
                email = f"totp-{n}@example.com"
                enrolled.put((email, enrol(port, email)))

            def totp_login() -> bool:
                try:
                    email, secret = enrolled.get_nowait()
                except queue.Empty:
                    return False
                body = {"email": email, "password": PASSWORD}
                first = request(port, "POST", "/api/v1/session", body)
                if first.status != 202:
                    return False
                pending = {"Cookie": cookie_of(first)}
                code = {"code": totp_code(secret)}
                return request(port, "POST", "/api/v1/session/mfa", code, pending).status == 201

            log("password logins")
            password = burst(web.pid, opts.seconds, password_login)
            log("password + TOTP logins")
            with_totp = burst(web.pid, opts.seconds, totp_login)
            ran_out = with_totp.seconds < opts.seconds * 0.9 or enrolled.empty()
    rows = [("password", password), ("password, then a TOTP code", with_totp)]
    lines = [
        "# Logins per second, one web process",
        "",
        f"`bench/logins.py`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; load "
        f"{load_at_start} at the start, {load_average()} at the end. {CLIENTS} clients, "
        f"{opts.seconds:g} s each, default argon2id (19 MiB, t=2, p=1), "
        "`PASSWORD_HASH_CONCURRENCY` at its default (the CPUs the process may use).",
        "",
        "| login | logins/s | server CPU per login |",
        "|---|---:|---:|",
        *(f"| {name} | {b.per_s:.1f} | {b.cpu_ms_per_login:.1f} ms |" for name, b in rows),
        "",
        "A TOTP login is the password request (its argon2id check is the cost of both kinds) and "
        "the code request: a Redis read, one encrypted secret opened (AES-GCM), one conditional "
        "UPDATE, then the session.",
    ]
    if ran_out:
        lines += ["", "(The TOTP burst ran out of enrolled accounts: raise `--accounts`.)"]
    report = "\n".join(lines) + "\n"
    print(report)
    opts.output.write_text(report)


if __name__ == "__main__":
    main()
