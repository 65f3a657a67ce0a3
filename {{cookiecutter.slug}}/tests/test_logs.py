"""Factor XI (logs as event streams) and IX (disposability) for the web process."""

import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .conftest import Web


def test_web_logs_json_lines_and_drains_to_exit_0(start: Callable[..., Any]) -> None:
    web: Web = start("web")
    web.wait_ready()
    user = web.signed_in()
    web.client.get("/livez")
    user.post("/api/v1/notes", json={"title": "logged", "body": "x"})
    user.get("/api/v1/notes/0")

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
        ("GET", "/api/v1/notes/0", 404),
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
