"""Logins per second with a passkey alone, beside password logins, against one web process.

    .venv/bin/python bench/passkey_login.py      # about 2 minutes; writes bench/PASSKEYS.md

Renders and installs the template as bench/run.py does, migrates a fresh database, starts one
`web` (PUBLIC_URL's default: the origin http://localhost:8000 and RP ID `localhost`, which the
software authenticator claims), and then, from the project's own venv (the authenticator needs
its `cryptography` and `cbor2`):
  - `CLIENTS` accounts, each with one passkey made by tests/authenticator.py (real P-256
    attestation and assertion bytes, as in tests/test_passkeys.py);
  - password logins: `CLIENTS` threads log in back to back for `SECONDS` (default argon2id);
  - passkey logins: the same threads each do options -> sign -> verify back to back.
A passkey login is two requests (options, then the answer) and no password hash; the driver's
own signing (one ECDSA signature a login) runs on the same two cores and is counted against it.
Needs what bench/run.py needs, except wrk.
"""

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from run import (
    BENCH_DIR,
    PACKAGE,
    PG_ARGS,
    Project,
    claim_redis_db,
    free_port,
    load_average,
    log,
    machine,
    release_redis_db,
    render_and_install,
    running,
    service_env,
    start,
    wait_ready,
)

CLIENTS = 8
SECONDS = 5.0

# Runs in the rendered project's venv, from its root. Prints one JSON object.
DRIVE = """
import http.client, json, sys, threading, time
from tests.authenticator import Authenticator

PORT, CLIENTS, SECONDS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PASSWORD = "a long and unguessable bench pass phrase"

def call(method, path, body=None, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    headers = {"Connection": "close", "Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = cookie
    payload = json.dumps(body) if body is not None else None
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    cookie = (response.getheader("set-cookie") or "").split(";")[0]
    conn.close()
    return response.status, (json.loads(data) if data else None), cookie

plain, accounts = [], []
for n in range(CLIENTS):
    # Password logins on accounts of their own: one with a passkey would owe a second factor.
    account = {"email": f"bench-password-{n}-{time.time_ns()}@example.com", "password": PASSWORD}
    assert call("POST", "/api/v1/users", account)[0] == 201
    plain.append((account, None))
for n in range(CLIENTS):
    email = f"bench-passkey-{n}-{time.time_ns()}@example.com"
    account = {"email": email, "password": PASSWORD}
    assert call("POST", "/api/v1/users", account)[0] == 201
    status, _, cookie = call("POST", "/api/v1/session", account)
    assert status == 201
    authenticator = Authenticator()
    _, options, _ = call("POST", "/api/v1/passkeys/registration/options", cookie=cookie)
    answer = {"credential": authenticator.create(options)}
    status, body, _ = call("POST", "/api/v1/passkeys", answer, cookie)
    assert status == 201, body
    accounts.append((account, authenticator))

def burst(one_login, who):
    stop_at = time.perf_counter() + SECONDS
    counts = [0] * CLIENTS
    failures = []
    def loop(n):
        try:
            while time.perf_counter() < stop_at:
                one_login(*who[n])
                counts[n] += 1
        except Exception as exc:  # a thread that died would make the rate look lower
            failures.append(repr(exc))
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(CLIENTS)]
    began = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    assert not failures, failures
    return sum(counts) / (time.perf_counter() - began)

def password(account, authenticator):
    status = call("POST", "/api/v1/session", account)[0]
    assert status == 201, status

def passkey(account, authenticator):
    _, options, _ = call("POST", "/api/v1/passkeys/login/options")
    answer = {"credential": authenticator.get(options)}
    status, body, _ = call("POST", "/api/v1/passkeys/login", answer)
    assert status == 201, body

print(json.dumps({"password": burst(password, plain), "passkey": burst(passkey, accounts)}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-passkeys-") as tmp:
        log("rendering and installing the template")
        root = render_and_install(Path(tmp))
        python = root / ".venv" / "bin" / "python"
        database = f"bench_passkeys_{free_port()}"
        subprocess.run(["createdb", *PG_ARGS, database], check=True)
        redis_db = claim_redis_db(python, 13)
        logs = Path(tmp) / "logs"
        logs.mkdir()
        port = free_port()
        project = Project(root, python, database, service_env(database, port, redis_db), logs)
        try:
            subprocess.run(
                [str(python), "-m", PACKAGE, "release"],
                cwd=root,
                env=project.env,
                check=True,
                capture_output=True,
            )
            with running(start(project, ["-m", PACKAGE, "web"], "web.log")) as web:
                wait_ready(web, port)
                log(f"{CLIENTS} clients, {SECONDS:.0f} s each: password, then passkey logins")
                out = subprocess.run(
                    [str(python), "-c", DRIVE, str(port), str(CLIENTS), str(SECONDS)],
                    cwd=root,
                    env=project.env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
            rates = json.loads(out.stdout)
        finally:
            release_redis_db(python, redis_db)
            subprocess.run(["dropdb", *PG_ARGS, "--if-exists", database], check=False)
    report = "\n".join(
        [
            "# Passkey logins per second, beside password logins",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; load {load_average()}; "
            f"one web process, {CLIENTS} clients back to back for {SECONDS:.0f} s each "
            "(bench/passkey_login.py).",
            "",
            "| login | per second |",
            "|---|---|",
            f"| password (argon2id, default parameters) | {rates['password']:.0f} |",
            "| passkey alone (options + signed answer, user verified; no password) | "
            f"{rates['passkey']:.0f} |",
            "",
            "Both share the machine with the driver (and whatever else runs: see the load); "
            "compare them with each other, not with other runs.",
            "",
        ]
    )
    (BENCH_DIR / "PASSKEYS.md").write_text(report)
    print(report)


if __name__ == "__main__":
    sys.exit(main())
