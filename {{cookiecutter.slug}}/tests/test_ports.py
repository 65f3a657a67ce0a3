"""Factor VIII on one host: any process type runs several times side by side, and every worker
can still be scraped. A port taken by something else stops a process with one clear line."""

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from .conftest import PLAIN_HTTP, Process, Web, free_port, free_ports

EX_UNAVAILABLE = 69


@pytest.fixture
def occupy() -> Iterator[Callable[[int], None]]:
    """`occupy(port)`: something else listens on `port` for the rest of the test."""
    with ExitStack() as held:

        def _occupy(port: int) -> None:
            sock = held.enter_context(socket.socket())
            sock.bind(("0.0.0.0", port))
            sock.listen()

        yield _occupy


def test_two_workers_on_one_host_are_both_scraped(start: Callable[..., Any]) -> None:
    first = free_ports(2)
    workers: list[Process] = [
        start("worker", WORKER_METRICS_PORT=str(first), WORKER_METRICS_PORTS="2") for _ in range(2)
    ]
    ports = sorted(w.wait_for_log("metrics listening", timeout=20)["port"] for w in workers)
    assert ports == [first, first + 1]  # the first free port of the range, each

    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, verify=PLAIN_HTTP).text
        assert "celery_queue_depth" in text


def one_line_naming(process: Process, port: str, setting: str) -> dict[str, Any]:
    assert process.popen.wait(15) == EX_UNAVAILABLE
    for reader in process.readers:
        reader.join(5)
    assert "Traceback" not in "\n".join(process.lines)
    [line] = process.lines  # one line, and nothing else
    record: dict[str, Any] = json.loads(line)
    assert record["level"] == "critical"
    assert str(record["port"]) == port
    assert record["setting"] == setting
    assert port in record["event"]
    assert setting.split(",")[0] in record["event"]
    return record


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_a_taken_web_port_stops_web_with_one_line(
    start: Callable[..., Any], occupy: Callable[[int], None], concurrency: str
) -> None:
    port = free_port()
    occupy(port)
    web: Web = start("web", PORT=str(port), WEB_CONCURRENCY=concurrency)
    one_line_naming(web, str(port), "PORT")


def test_a_taken_worker_port_range_stops_the_worker_with_one_line(
    start: Callable[..., Any], occupy: Callable[[int], None]
) -> None:
    first = free_ports(2)
    occupy(first)
    occupy(first + 1)
    worker = start("worker", WORKER_METRICS_PORT=str(first), WORKER_METRICS_PORTS="2")
    one_line_naming(worker, f"{first}-{first + 1}", "WORKER_METRICS_PORT, WORKER_METRICS_PORTS")
