"""Factor IX, disposability of `web`: at SIGTERM readiness turns 503 at once, the listener closes,
in-flight requests finish, and the process exits 0 within SHUTDOWN_GRACE_SECONDS."""

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import TcpProxy, Web, wait_until


def start_post(web: Web, path: str, payload: dict[str, str]) -> tuple[socket.socket, bytes]:
    """Send a signed-in POST's headers and half its body; return the socket and the other half."""
    cookie = "; ".join(f"{name}={value}" for name, value in web.signed_in().cookies.items())
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", int(web.env["PORT"])))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Cookie: {cookie}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock, body[len(body) // 2 :]


def finish(sock: socket.socket, rest: bytes) -> int:
    sock.sendall(rest)
    sock.settimeout(10)
    status_line = sock.makefile("rb").readline().decode()
    sock.close()
    return int(status_line.split()[1])


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_in_flight_request_finishes_and_exit_is_0(
    concurrency: str, start: Callable[..., Any]
) -> None:
    web: Web = start("web", WEB_CONCURRENCY=concurrency, SHUTDOWN_GRACE_SECONDS="10")
    web.wait_ready()
    port = int(web.env["PORT"])
    sock, rest = start_post(web, "/api/v1/notes", {"title": "in flight", "body": "x " * 500})
    time.sleep(0.3)  # the server is reading the body

    signalled = time.monotonic()
    web.send(signal.SIGTERM)
    time.sleep(0.5)
    assert refused(port)  # no new connections
    assert finish(sock, rest) == 201  # the body arrived after SIGTERM: still served
    code = web.popen.wait(10)
    drained = time.monotonic() - signalled
    assert code == 0  # a clean drain is 0, not 143
    print(f"WEB_CONCURRENCY={concurrency}: SIGTERM to exit {drained:.2f}s, status {code}")
    assert any(r["event"] == "Application shutdown complete." for r in web.records())


def test_readiness_is_503_from_the_signal_on(
    start: Callable[..., Any], proxy: Callable[[str], TcpProxy], migrated: dict[str, str]
) -> None:
    # A slow (not failing) database makes /readyz take a while: SIGTERM lands while it runs.
    tcp = proxy(migrated["DATABASE_URL"])
    web: Web = start(
        "web", DATABASE_URL=tcp.url(migrated["DATABASE_URL"]), READINESS_TIMEOUT_SECONDS="5"
    )
    web.wait_ready()
    tcp.slow(0.4)
    answers: list[httpx.Response] = []
    probe = threading.Thread(target=lambda: answers.append(web.client.get("/readyz")))
    probe.start()
    time.sleep(0.2)
    web.send(signal.SIGTERM)
    probe.join(10)
    assert answers[0].status_code == 503
    assert answers[0].json()["status"] == "draining"
    assert answers[0].json()["checks"]["postgres"] == "ok"  # dependencies fine: it is the signal
    assert web.popen.wait(10) == 0


def test_grace_period_bounds_the_drain(start: Callable[..., Any]) -> None:
    # The request deadline is far off: only the grace can end this drain.
    web: Web = start("web", SHUTDOWN_GRACE_SECONDS="1", REQUEST_TIMEOUT_SECONDS="60")
    web.wait_ready()
    sock, _ = start_post(web, "/api/v1/notes", {"title": "t", "body": "never"})
    time.sleep(0.3)
    signalled = time.monotonic()
    web.send(signal.SIGTERM)
    wait_until(lambda: web.popen.poll() is not None, 10, describe=lambda: "web to exit")
    assert time.monotonic() - signalled < 1 + 1.5  # the grace, plus closing the pools
    sock.close()
