"""Abuse control: write endpoints are limited per client address and per session, in Redis,
so the limit holds across every web process."""

from collections.abc import Callable
from typing import Any

import httpx

from .conftest import Web, error


def post_note(web: Web, address: str, cookie: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address}  # the tests connect from a trusted proxy address
    if cookie:
        headers["Cookie"] = f"session={cookie}"
    return web.client.post("/api/v1/notes", json={"title": "t", "body": "b"}, headers=headers)


def test_limit_is_shared_by_web_processes_and_answers_429(start: Callable[..., Any]) -> None:
    a: Web = start("web", RATE_LIMIT="5/minute")
    b: Web = start("web", RATE_LIMIT="5/minute")
    a.wait_ready()
    b.wait_ready()
    codes = [post_note(web, "10.1.0.1").status_code for web in (a, b, a, b, a)]
    assert codes == [201] * 5
    refused = post_note(b, "10.1.0.1")
    assert refused.status_code == 429
    assert error(refused) == "too many requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert post_note(a, "10.1.0.2").status_code == 201  # another client is not affected
    assert a.client.get("/api/v1/notes").status_code == 200  # reads are not limited


def test_new_cookies_do_not_escape_the_address_limit(start: Callable[..., Any]) -> None:
    web: Web = start("web", RATE_LIMIT="3/minute")
    web.wait_ready()
    codes = []
    for n in range(4):
        # A fresh session for every request, all from one address.
        elsewhere = {"X-Forwarded-For": f"10.2.0.{n}"}
        login = web.client.post("/api/v1/session", json={"username": f"u{n}"}, headers=elsewhere)
        codes.append(post_note(web, "10.2.1.1", login.cookies["session"]).status_code)
    assert codes == [201, 201, 201, 429]


def test_new_addresses_do_not_escape_the_session_limit(start: Callable[..., Any]) -> None:
    web: Web = start("web", RATE_LIMIT="3/minute")
    web.wait_ready()
    login = web.client.post(
        "/api/v1/session", json={"username": "roamer"}, headers={"X-Forwarded-For": "10.3.0.1"}
    )
    cookie = login.cookies["session"]
    # One session from a new address every time.
    codes = [post_note(web, f"10.3.1.{n}", cookie).status_code for n in range(4)]
    assert codes == [201, 201, 201, 429]
