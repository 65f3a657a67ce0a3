"""Health: /livez touches nothing; /readyz names each dependency and answers in bounded time."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Web, free_port


def test_ready_when_postgres_and_redis_answer(web: Web) -> None:
    response = web.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}
    assert web.client.get("/livez").json() == {"status": "ok"}


@pytest.mark.parametrize("dependency", ["postgres", "redis"])
def test_unreachable_dependency_is_503_naming_it_while_alive(
    dependency: str, start: Callable[..., Any], migrated: dict[str, str]
) -> None:
    closed = free_port()  # nothing listens here: connections are refused
    if dependency == "postgres":
        override = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/nowhere"}
    else:
        override = {"REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    web: Web = start("web", **override)
    # It starts anyway (no crash loop): alive, serving, and saying it is not ready.
    web.wait_for_log("Uvicorn running on")  # listening, not ready
    assert web.client.get("/livez").status_code == 200

    began = time.monotonic()
    response = web.client.get("/readyz")
    assert time.monotonic() - began < 3
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks[dependency] != "ok"
    other = "redis" if dependency == "postgres" else "postgres"
    assert checks[other] == "ok"
