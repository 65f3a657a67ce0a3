"""Factor IV: a backing service that refuses or hangs costs seconds and a 503, never a hung or
crashed process, and everything recovers by itself when the service is back."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .conftest import TcpProxy, Web, error, proxy_to, wait_until

FAST_FAIL = {
    "DB_TIMEOUT_SECONDS": "1",
    "REDIS_TIMEOUT_SECONDS": "1",
    "READINESS_TIMEOUT_SECONDS": "1",
    "REQUEST_TIMEOUT_SECONDS": "2",
}
URL_VARIABLE = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}


def use_dependency(client: httpx.Client, dependency: str) -> httpx.Response:
    """One API call of a signed-in client that needs the dependency."""
    if dependency == "postgres":
        return client.get("/api/v1/notes", params={"limit": 1})
    return client.get("/api/v1/session")  # reads the session from Redis


@pytest.fixture(scope="module")
def proxies(migrated: dict[str, str]) -> Iterator[dict[str, TcpProxy]]:
    made = {dep: proxy_to(migrated[variable]) for dep, variable in URL_VARIABLE.items()}
    yield made
    for tcp in made.values():
        tcp.close()


@pytest.fixture
def behind_both(
    shared: Callable[..., Any], proxies: dict[str, TcpProxy], migrated: dict[str, str]
) -> Iterator[Web]:
    """One web for the four outages, its PostgreSQL and Redis each behind a proxy: an outage
    test starts no process while it holds the machine (`timing`), and each finds the web as the
    outage before it left it. The proxies are healed after each test, pass or fail."""
    env = {var: proxies[dep].url(migrated[var]) for dep, var in URL_VARIABLE.items()}
    yield shared("web", **FAST_FAIL, **env, BROKER_URL=migrated["REDIS_URL"])
    for tcp in proxies.values():
        tcp.heal()


@pytest.mark.timing
@pytest.mark.parametrize("fault", ["refuse", "stall"])
@pytest.mark.parametrize("dependency", ["postgres", "redis"])
def test_outage_is_a_fast_503_and_recovers_by_itself(
    dependency: str, fault: str, behind_both: Web, proxies: dict[str, TcpProxy]
) -> None:
    web, tcp = behind_both, proxies[dependency]
    client = web.signed_in()
    assert use_dependency(client, dependency).status_code == 200  # pool warm, all well

    getattr(tcp, fault)()

    began = time.monotonic()
    assert web.client.get("/livez").status_code == 200
    assert time.monotonic() - began < 0.5  # liveness never waits on a dependency

    began = time.monotonic()
    ready = web.client.get("/readyz")
    readiness_seconds = time.monotonic() - began
    assert ready.status_code == 503
    assert readiness_seconds < 3
    assert ready.json()["checks"][dependency] != "ok"
    print(f"{dependency} {fault}: /readyz answered 503 in {readiness_seconds:.2f}s")

    began = time.monotonic()
    failed = use_dependency(client, dependency)
    assert failed.status_code == 503
    # From the failed call itself, or from the request deadline if the stall outlasts it.
    assert error(failed) in (
        f"{dependency} unavailable, try again later",
        "request timed out, try again later",
    )
    assert time.monotonic() - began < 3

    tcp.heal()
    wait_until(lambda: web.client.get("/readyz").status_code == 200, timeout=10)
    wait_until(lambda: use_dependency(client, dependency).status_code == 200, timeout=10)
    assert web.popen.poll() is None  # never crashed


def test_a_request_stuck_on_a_silent_connection_ends_at_its_deadline(
    start: Callable[..., Any],
    proxy: Callable[[str], TcpProxy],
    migrated: dict[str, str],
) -> None:
    tcp = proxy(migrated["DATABASE_URL"])
    web: Web = start("web", **FAST_FAIL, DATABASE_URL=tcp.url(migrated["DATABASE_URL"]))
    web.wait_ready()
    client = web.signed_in()
    # One query whose connection is back in the pool before the answer (`engine.connect()`).
    assert client.get("/api/v1/notes/2147483647").status_code == 404
    tcp.stall()  # that connection stays open, and its queries are never answered

    began = time.monotonic()
    response = client.get("/api/v1/notes/2147483647", timeout=10)
    elapsed = time.monotonic() - began
    # No client timeout covers a query sent on a connection whose peer goes silent: only the
    # request deadline (REQUEST_TIMEOUT_SECONDS=2) ends it.
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert error(response) == "request timed out, try again later"
    assert 1.9 < elapsed < 4
    assert web.client.get("/livez").status_code == 200  # the process serves on

    # The answer is logged although the request's clean-up is still stuck on that connection.
    def logged_503() -> bool:
        access = [r for r in web.records() if r["event"] == "request"]
        return ("/api/v1/notes/2147483647", 503) in [(r["path"], r["status"]) for r in access]

    wait_until(logged_503, timeout=5)  # output arrives through a pipe, read by a thread


@pytest.mark.parametrize("dependency", ["postgres", "redis"])
def test_web_started_during_an_outage_becomes_ready_when_it_ends(
    dependency: str,
    start: Callable[..., Any],
    proxy: Callable[[str], TcpProxy],
    migrated: dict[str, str],
) -> None:
    variable = URL_VARIABLE[dependency]
    tcp = proxy(migrated[variable])
    tcp.refuse()
    web: Web = start("web", **FAST_FAIL, **{variable: tcp.url(migrated[variable])})
    web.wait_for_log("Uvicorn running on")  # listening, not ready
    assert web.client.get("/livez").status_code == 200
    assert web.client.get("/readyz").status_code == 503
    tcp.heal()
    web.wait_ready(timeout=10)
