"""The clock: any number may run, each schedule entry fires once per interval across all of them,
and a standby takes over when the active one stops (at once) or dies (within the lock timeout)."""

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis

from .conftest import Process, TcpProxy, Web, wait_until

FAST = {"HEARTBEAT_SECONDS": "1", "CLOCK_LOCK_TIMEOUT_SECONDS": "5"}


def own() -> dict[str, str]:
    """FAST loops and a Redis prefix of the test's own, so its own clock lock and queue: a clock
    another test killed holds the default lock for up to 30 s."""
    return {**FAST, "REDIS_KEY_PREFIX": f"clock-{secrets.token_hex(4)}"}


@pytest.fixture
def fast_start(start: Callable[..., Any]) -> Callable[..., Process]:
    """`start` with the test's `own()` settings, for every process it starts."""
    settings = own()
    return lambda kind, **env: start(kind, **{**settings, **env})


def heartbeats(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) FROM heartbeats").fetchone()[0])  # type: ignore[index]


def active_and_standby(start: Callable[..., Process]) -> tuple[Process, Process]:
    first, second = start("clock"), start("clock")

    def holder() -> tuple[Process, Process] | None:
        for a, b in ((first, second), (second, first)):
            if any("Acquired lock" in line for line in a.lines):
                return a, b
        return None

    active, standby = wait_until(holder, timeout=15)
    return active, standby


def test_two_clocks_fire_each_interval_once(
    fast_start: Callable[..., Process], db: psycopg.Connection[Any], web: Web
) -> None:
    fast_start("worker")
    clocks = [fast_start("clock") for _ in range(2)]
    first = heartbeats(db)
    wait_until(lambda: heartbeats(db) > first, timeout=15)  # counted, whoever schedules
    time.sleep(2)  # let the first, immediate run settle
    before = heartbeats(db)
    time.sleep(10)
    fired = heartbeats(db) - before
    assert 8 <= fired <= 12, fired  # about 10 (one clock), not about 20 (both)
    holders = [clock for clock in clocks if any("Acquired lock" in x for x in clock.lines)]
    assert len(holders) == 1  # the other one waited as a standby throughout
    listed = web.client.get("/api/v1/heartbeats", params={"limit": 5}).json()["items"]
    times = [item["ran_at"] for item in listed]
    assert len(times) == 5
    assert times == sorted(times, reverse=True)  # newest first


def test_standby_takes_over_after_the_active_clock_is_killed(
    fast_start: Callable[..., Process], db: psycopg.Connection[Any]
) -> None:
    fast_start("worker")
    active, standby = active_and_standby(fast_start)
    active.kill_group()  # SIGKILL: no chance to release the lock
    killed_at = time.monotonic()
    standby.wait_for_log("Acquired lock", timeout=15)
    took_over = time.monotonic() - killed_at
    assert took_over <= 5 + 1.5  # within the lock timeout (plus a loop of slack)
    before = heartbeats(db)
    wait_until(lambda: heartbeats(db) >= before + 2, timeout=6)  # and the beat goes on


def test_sigterm_releases_the_lock_at_once_and_exits_0(
    fast_start: Callable[..., Process],
) -> None:
    active, standby = active_and_standby(fast_start)
    stopped_at = time.monotonic()
    code = active.stop(signal.SIGTERM, timeout=5)
    # Its last lines say why, should it ever not be 0: as text, which pytest prints whole.
    assert code == 0, "\n".join(active.lines[-30:])
    assert time.monotonic() - stopped_at < 2
    standby.wait_for_log("Acquired lock", timeout=3)  # well before the 5 s lock timeout
    assert all(record["event"] for record in active.records())  # its output: JSON lines only


# The clock's own entry point, with one line added: every publish is interrupted by SIGTERM, the
# way a deploy's signal now and then lands while the clock is talking to the broker.
SIGTERM_IN_EACH_PUBLISH = """
import os, signal, sys
from celery import signals
signals.before_task_publish.connect(lambda **_: os.kill(os.getpid(), signal.SIGTERM), weak=False)
sys.argv[1:] = ["clock"]
from {{ cookiecutter.package }}.__main__ import main
main()
"""


def test_sigterm_inside_a_publish_lets_it_finish_then_exits_0(migrated: dict[str, str]) -> None:
    # A queue and a lock of its own: no other clock or worker of this run takes either.
    env = {**migrated, **own()}
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_IN_EACH_PUBLISH],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = result.stdout + result.stderr
    assert result.returncode == 0, lines
    # The publish under way when the signal landed was finished, not cut off: its message waits
    # in the queue. (Celery's own handler raised SystemExit inside it, and sent nothing.)
    assert "task sent" in lines
    broker = redis.Redis.from_url(env["REDIS_URL"])
    key = f"{env['REDIS_KEY_PREFIX']}:{env['TASK_QUEUE']}"  # the broker's keys take the prefix
    try:
        assert broker.llen(key) >= 1, lines
    finally:
        broker.delete(key)
    assert "Releasing lock" in lines


def test_a_redis_outage_skips_ticks_and_the_clock_goes_on(
    fast_start: Callable[..., Process], proxy: Callable[[str], TcpProxy], migrated: dict[str, str]
) -> None:
    tcp = proxy(migrated["REDIS_URL"])
    env = {
        # The lock and the schedule through the proxy; the broker not, so the outage meets a
        # tick's renewal of the lock, not a publish (which Celery retries on its own).
        "REDIS_URL": tcp.url(migrated["REDIS_URL"]),
        "BROKER_URL": migrated["REDIS_URL"],
        # A lock timeout that outlasts the outage, however slow the machine: it stays this clock's.
        "CLOCK_LOCK_TIMEOUT_SECONDS": "15",
    }
    clock = fast_start("clock", **env)
    clock.wait_for_log("Acquired lock", timeout=15)
    tcp.refuse()
    clock.wait_for_log("Redis out of reach: tick skipped", timeout=10)  # and still running
    tcp.heal()
    healed = len(clock.lines)
    wait_until(lambda: any("task sent" in line for line in clock.lines[healed:]), timeout=10)
    assert clock.popen.poll() is None  # still the lock holder, scheduling
