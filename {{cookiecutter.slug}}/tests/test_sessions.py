"""Factor VI: sessions live in Redis, so any web process serves any session, across restarts."""

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import httpx
import redis

from .conftest import Web, error


def two_webs(start: Callable[..., Any]) -> tuple[Web, Web]:
    a, b = start("web"), start("web")
    a.wait_ready()
    b.wait_ready()
    return a, b


def log_in(web: Web, username: str) -> str:
    response = web.client.post("/api/v1/session", json={"username": username})
    assert response.status_code == 201
    return response.cookies["session"]


def cookie_header(cookie: str) -> dict[str, str]:
    return {"Cookie": f"session={cookie}"}


def whoami(web: Web, cookie: str) -> httpx.Response:
    return httpx.get(f"{web.url}/api/v1/session", headers=cookie_header(cookie))


def test_session_made_on_one_web_is_read_by_another(start: Callable[..., Any]) -> None:
    a, b = two_webs(start)
    cookie = log_in(a, "ann")
    response = whoami(b, cookie)
    assert response.status_code == 200
    assert response.json()["username"] == "ann"


def test_logout_kills_the_cookie_everywhere(start: Callable[..., Any]) -> None:
    a, b = two_webs(start)
    cookie = log_in(a, "cy")
    logout = httpx.delete(f"{b.url}/api/v1/session", headers=cookie_header(cookie))
    assert logout.status_code == 204
    assert (
        'session=""' in logout.headers["set-cookie"] or "Max-Age=0" in logout.headers["set-cookie"]
    )
    for web in (a, b):
        assert whoami(web, cookie).status_code == 401  # the old cookie, replayed


def test_cookie_is_opaque_signed_httponly_lax(web: Web, redis_url: str) -> None:
    response = web.client.post("/api/v1/session", json={"username": "dee"})
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "secure" not in header  # SESSION_COOKIE_SECURE=false in the tests
    cookie = response.cookies["session"]
    assert "dee" not in cookie  # only an id and its signature
    session_id = cookie.split(".")[0]
    ttl = redis.Redis.from_url(redis_url).ttl(f"session:{session_id}")
    assert 0 < ttl <= 86_400


def test_secure_flag_comes_from_config(start: Callable[..., Any]) -> None:
    web: Web = start("web", SESSION_COOKIE_SECURE="true")
    web.wait_ready()
    response = web.client.post("/api/v1/session", json={"username": "eve"})
    assert "secure" in response.headers["set-cookie"].lower()


def test_ttl_is_refreshed_on_use(web: Web, redis_url: str) -> None:
    cookie = log_in(web, "fay")
    key = f"session:{cookie.split('.')[0]}"
    store = redis.Redis.from_url(redis_url)
    store.expire(key, 30)
    assert whoami(web, cookie).status_code == 200
    assert store.ttl(key) > 30


def test_login_issues_a_new_id_and_drops_the_old_one(web: Web) -> None:
    old = log_in(web, "gus")
    response = httpx.post(
        f"{web.url}/api/v1/session", json={"username": "gus"}, headers=cookie_header(old)
    )
    new = response.cookies["session"]
    assert new != old
    assert whoami(web, old).status_code == 401
    assert whoami(web, new).status_code == 200


def last_changed(text: str) -> str:
    return text[:-1] + ("B" if text.endswith("A") else "A")


def test_tampered_forged_or_unknown_cookies_are_no_session(web: Web, secret_key: str) -> None:
    real = log_in(web, "hal")
    session_id, signature = real.split(".")
    # A client-chosen id, correctly signed (as if the key leaked), but unknown to the store.
    chosen = "attacker-chosen-id"
    mac = hmac.digest(secret_key.encode(), chosen.encode(), hashlib.sha256)
    forged_known_key = f"{chosen}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    for cookie in (
        f"{session_id}.{last_changed(signature)}",  # tampered signature
        f"{last_changed(session_id)}.{signature}",  # tampered id
        session_id,  # unsigned
        "",
        "....",
        forged_known_key,
    ):
        response = whoami(web, cookie)
        assert response.status_code == 401, cookie
        assert error(response) == "no session"
