"""Abuse control: write endpoints are limited per client address and per session, in Redis,
so the limit holds across every web process."""

from collections.abc import Callable
from typing import Any

import httpx

from .conftest import PASSWORD, PLAIN_HTTP, Web, error, new_email


def post_note(web: Web, address: str, cookie: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address}  # the tests connect from a trusted proxy address
    if cookie:
        headers["Cookie"] = f"session={cookie}"
    return web.client.post("/api/v1/notes", json={"title": "t", "body": "b"}, headers=headers)


def session_from(web: Web, address: str) -> str:
    """Sign up and log in from `address`; the session cookie (two writes from it)."""
    headers = {"X-Forwarded-For": address}
    account = {"email": new_email(), "password": PASSWORD}
    assert web.client.post("/api/v1/users", json=account, headers=headers).status_code == 201
    login = httpx.post(
        f"{web.url}/api/v1/session", json=account, headers=headers, verify=PLAIN_HTTP
    )
    return str(login.cookies["session"])


def test_limit_is_shared_by_web_processes_and_answers_429(shared: Callable[..., Any]) -> None:
    a: Web = shared("web", 1, RATE_LIMIT="5/minute")
    b: Web = shared("web", 2, RATE_LIMIT="5/minute")
    a.wait_ready()
    b.wait_ready()
    cookies = [session_from(a, f"10.1.1.{n}") for n in range(5)]
    webs = (a, b, a, b, a)
    codes = [
        post_note(web, "10.1.0.1", c).status_code for web, c in zip(webs, cookies, strict=True)
    ]
    assert codes == [201] * 5
    refused = post_note(b, "10.1.0.1", session_from(b, "10.1.1.9"))
    assert refused.status_code == 429
    assert error(refused) == "too many requests"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Another client is not affected, and reads are not limited.
    assert post_note(a, "10.1.0.2", cookies[0]).status_code == 201
    headers = {"X-Forwarded-For": "10.1.0.1", "Cookie": f"session={cookies[0]}"}
    assert a.client.get("/api/v1/notes", headers=headers).status_code == 200


def test_new_cookies_do_not_escape_the_address_limit(shared: Callable[..., Any]) -> None:
    web: Web = shared("web", RATE_LIMIT="3/minute")
    web.wait_ready()
    # A fresh session for every request (each made elsewhere), all sent from one address.
    cookies = [session_from(web, f"10.2.0.{n}") for n in range(4)]
    codes = [post_note(web, "10.2.1.1", cookie).status_code for cookie in cookies]
    assert codes == [201, 201, 201, 429]


def test_new_addresses_do_not_escape_the_session_limit(shared: Callable[..., Any]) -> None:
    web: Web = shared("web", RATE_LIMIT="3/minute")
    web.wait_ready()
    cookie = session_from(web, "10.3.0.1")
    # One session from a new address every time.
    codes = [post_note(web, f"10.3.1.{n}", cookie).status_code for n in range(4)]
    assert codes == [201, 201, 201, 429]
