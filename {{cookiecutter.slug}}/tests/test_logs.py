"""Factor XI (logs as event streams) and IX (disposability) for the web process, and one
timestamp format across every process type."""

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .conftest import Process, Web

# ISO 8601 in UTC, always with microseconds, always `Z` (core/logging.py: utc_timestamp).
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_web_logs_json_lines_and_drains_to_exit_0(start: Callable[..., Any]) -> None:
    web: Web = start("web")
    web.wait_ready()
    user = web.signed_in()
    web.client.get("/livez")
    user.post("/api/v1/notes", json={"title": "logged", "body": "x"})
    user.get("/api/v1/notes/2147483647")

    assert web.stop(signal.SIGTERM) == 0  # a clean drain is 0, not 143

    records = web.records()  # every line, stdout and stderr, uvicorn's own included
    assert records
    for record in records:
        assert {"timestamp", "level", "event", "logger"} <= record.keys(), record
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None
        assert "color_message" not in record
    assert any(r["logger"].startswith("uvicorn") for r in records)

    access = [r for r in records if r["event"] == "request" and r["path"] != "/readyz"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("POST", "/api/v1/users", 201),
        ("POST", "/api/v1/session", 201),
        ("GET", "/livez", 200),
        ("POST", "/api/v1/notes", 201),
        ("GET", "/api/v1/notes/2147483647", 404),
    ]
    for line in access:
        assert line["duration_ms"] >= 0
        assert len(line["request_id"]) == 32


def test_log_level_is_the_minimum_for_every_line(start: Callable[..., Any]) -> None:
    web: Web = start("web", LOG_LEVEL="WARNING")
    web.wait_ready()
    web.client.get("/livez")
    web.client.get("/api/v1/session")  # 401: still a request, still below WARNING
    assert web.stop(signal.SIGTERM) == 0

    # uvicorn's start-up lines and the access lines are INFO: none of them may appear.
    assert [r for r in web.records() if r["level"] in {"debug", "info"}] == []


def finished(process: Process, timeout: float = 30) -> int:
    """Its exit status, once it has exited by itself and all its output is read."""
    code = process.popen.wait(timeout)
    for reader in process.readers:
        reader.join(5)
    return code


def test_every_process_type_writes_one_timestamp_format(start: Callable[..., Any]) -> None:
    web: Web = start("web")
    worker: Process = start("worker")
    # A key prefix of its own: killed at teardown, this clock may hold its lock (for 30 s by
    # default), which the clock tests run next in this test process would wait for.
    clock: Process = start("clock", REDIS_KEY_PREFIX="timestamp-test")
    release = start("release")
    # The line each process type writes before it has its settings.
    kinds = ("web", "worker", "clock", "release")
    bad_config = [start(kind, LOG_LEVEL="LOUD") for kind in kinds]
    web.wait_ready()
    web.client.get("/livez", headers={"X-Request-ID": "timestamp-check"})
    web.wait_for_log("request")  # the access line, written without structlog
    worker.wait_for_log("ready.", timeout=20)  # Celery's own lines
    clock.wait_for_log("beat: Starting", timeout=20)  # redbeat's
    # The lines so far are enough: the long-running ones are stopped at teardown.
    for process in (release, *bad_config):
        assert finished(process) == (0 if process is release else 78), process.kind

    loggers = set()
    for process in (web, worker, clock, release, *bad_config):
        assert process.lines, process.kind
        for record in process.records():
            assert TIMESTAMP.fullmatch(record["timestamp"]), record
            loggers.add(record["logger"].split(".")[0])
    assert {"uvicorn", "celery", "alembic", "{{ cookiecutter.package }}"} <= loggers


LOGS_IN_A_LOOP_AND_IN_ITS_SIGTERM_HANDLER = """
import signal, sys, time, structlog
from {{ cookiecutter.package }}.core.logging import configure_logging
configure_logging("INFO")
log = structlog.get_logger("test")
signal.signal(signal.SIGTERM, lambda *_: log.info("from the signal handler"))
stop: list[int] = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
print("ready", file=sys.stderr, flush=True)
deadline = time.monotonic() + 60
while not stop and time.monotonic() < deadline:
    log.info("a line")
"""


def test_a_signal_handler_that_logs_mid_line_does_not_hang_the_process() -> None:
    # Celery's SIGTERM handler logs (`worker shutting down`): a worker signalled while it wrote
    # a line hung until SIGKILL, waiting for the write lock its own thread held.
    child = subprocess.Popen(
        [sys.executable, "-c", LOGS_IN_A_LOOP_AND_IN_ITS_SIGTERM_HANDLER],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stderr is not None
        assert child.stderr.readline().strip() == b"ready"
        for _ in range(100):  # some land while a line is being written
            child.send_signal(signal.SIGTERM)
            time.sleep(0.01)
        # Then it stops writing, if it can still run: a child that only wrote for a while
        # outlived the 100 signals only on an idle machine, and the late ones met its exit.
        child.send_signal(signal.SIGUSR1)
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()
