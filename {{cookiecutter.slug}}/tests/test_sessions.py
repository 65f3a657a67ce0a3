"""Factor VI: sessions live in Redis, so any web process serves any session, across restarts;
and they meet OWASP ASVS 5 V7 (session management) and V3.3 (cookies)."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from .conftest import PASSWORD, PLAIN_HTTP, Outcome, Web, error


def two_webs(shared: Callable[..., Any], **env: str) -> tuple[Web, Web]:
    a, b = shared("web", 1, **env), shared("web", 2, **env)
    a.wait_ready()
    b.wait_ready()
    return a, b


def cookie_of(client: httpx.Client) -> str:
    return str(client.cookies["session"])


def whoami(web: Web, cookie: str) -> httpx.Response:
    return httpx.get(
        f"{web.url}/api/v1/session", headers={"Cookie": f"session={cookie}"}, verify=PLAIN_HTTP
    )


def record_key(cookie: str) -> str:
    # REDIS_KEY_PREFIX's default: the package name.
    return f"{{ cookiecutter.package }}:session:{cookie.split('.')[0]}"


def test_session_made_on_one_web_is_read_by_another(shared: Callable[..., Any]) -> None:
    a, b = two_webs(shared)
    email = a.sign_up()
    response = whoami(b, cookie_of(a.signed_in(email)))
    assert response.status_code == 200
    assert response.json()["user"]["email"] == email


def test_logout_kills_the_cookie_everywhere(shared: Callable[..., Any]) -> None:
    a, b = two_webs(shared)
    cookie = cookie_of(a.signed_in())
    logout = httpx.delete(
        f"{b.url}/api/v1/session", headers={"Cookie": f"session={cookie}"}, verify=PLAIN_HTTP
    )
    assert logout.status_code == 204
    cleared = logout.headers["set-cookie"]
    assert "Max-Age=0" in cleared or 'session=""' in cleared
    for web in (a, b):
        assert whoami(web, cookie).status_code == 401  # the old cookie, replayed


def test_cookie_is_an_opaque_256_bit_id_signed_httponly_lax(web: Web, redis_url: str) -> None:
    email = web.sign_up()
    response = httpx.post(
        f"{web.url}/api/v1/session", json={"email": email, "password": PASSWORD}, verify=PLAIN_HTTP
    )
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "path=/" in header
    assert "secure" not in header  # SESSION_COOKIE_SECURE=false in the tests
    cookie = response.cookies["session"]
    session_id = cookie.split(".")[0]
    assert len(base64.urlsafe_b64decode(session_id + "==")) * 8 >= 128
    assert email.split("@")[0] not in cookie  # only an id and its signature
    ttl = redis.Redis.from_url(redis_url).ttl(record_key(cookie))
    assert 0 < ttl <= 86_400


def test_secure_cookie_has_the_host_prefix(shared: Callable[..., Any]) -> None:
    web: Web = shared("web", SESSION_COOKIE_SECURE="true")
    email = web.sign_up()
    response = httpx.post(
        f"{web.url}/api/v1/session", json={"email": email, "password": PASSWORD}, verify=PLAIN_HTTP
    )
    header = response.headers["set-cookie"]
    assert header.startswith("__Host-session=")
    assert "secure" in header.lower()
    assert "path=/" in header.lower()
    assert "domain" not in header.lower()


def test_idle_timer_restarts_on_use(web: Web, redis_url: str) -> None:
    cookie = cookie_of(web.signed_in())
    store = redis.Redis.from_url(redis_url)
    store.expire(record_key(cookie), 30)
    assert whoami(web, cookie).status_code == 200
    assert store.ttl(record_key(cookie)) > 30


def test_absolute_lifetime_ends_a_session_however_active(web: Web, redis_url: str) -> None:
    cookie = cookie_of(web.signed_in())
    store = redis.Redis.from_url(redis_url)
    key = record_key(cookie)

    def expire_in(seconds: float) -> None:  # as if the session had been made long ago
        record = json.loads(store.get(key) or b"{}")
        store.set(key, json.dumps({**record, "expires_at": time.time() + seconds}), keepttl=True)

    expire_in(30)
    assert whoami(web, cookie).status_code == 200
    assert 0 < store.ttl(key) <= 30  # use restarts the idle timer, never past the lifetime
    expire_in(-1)
    assert whoami(web, cookie).status_code == 401
    assert store.exists(key) == 0


@pytest.mark.parametrize(
    "record",
    [b'{"username": "from the previous release"}', b"not json", b'{"expires_at": "soon"}'],
)
def test_a_session_record_of_another_shape_is_no_session(
    web: Web, redis_url: str, secret_key: str, record: bytes
) -> None:
    # A rolling deploy meets sessions that the previous release wrote: refused, never a 500.
    cookie = sign(secret_key, "session-of-an-older-release")
    redis.Redis.from_url(redis_url).set(record_key(cookie), record, ex=60)
    response = whoami(web, cookie)
    assert response.status_code == 401
    assert redis.Redis.from_url(redis_url).exists(record_key(cookie)) == 0


def test_login_issues_a_new_id_and_drops_the_old_one(web: Web) -> None:
    email = web.sign_up()
    old = cookie_of(web.signed_in(email))
    response = httpx.post(
        f"{web.url}/api/v1/session",
        json={"email": email, "password": PASSWORD},
        headers={"Cookie": f"session={old}"},
        verify=PLAIN_HTTP,
    )
    new = response.cookies["session"]
    assert new != old
    assert whoami(web, old).status_code == 401
    assert whoami(web, new).status_code == 200


def last_changed(text: str) -> str:
    return text[:-1] + ("B" if text.endswith("A") else "A")


def sign(key: str, session_id: str) -> str:
    mac = hmac.digest(key.encode(), session_id.encode(), hashlib.sha256)
    return f"{session_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_tampered_forged_or_unknown_cookies_are_no_session(web: Web, secret_key: str) -> None:
    real = cookie_of(web.signed_in())
    session_id, signature = real.split(".")
    for cookie in (
        f"{session_id}.{last_changed(signature)}",  # tampered signature
        f"{last_changed(session_id)}.{signature}",  # tampered id
        session_id,  # unsigned
        "",
        "....",
        sign(secret_key, "attacker-chosen-id"),  # signed (as if the key leaked), but unknown
    ):
        response = whoami(web, cookie)
        assert response.status_code == 401, cookie
        assert error(response) == "no session"


@pytest.fixture(scope="module")
def old_key() -> str:
    return "an-old-secret-key-that-was-rotated-out-0123456789"


def test_rotated_key_keeps_old_cookies_only_while_it_is_a_fallback(
    start: Callable[..., Any], old_key: str, migrated: dict[str, str], web: Web
) -> None:
    # Phase 0: every instance signs with the old key.
    before: Web = start("web", SECRET_KEY=old_key)
    before.wait_ready()
    email = before.sign_up()
    old_cookie = cookie_of(before.signed_in(email))
    # Phase 1: the new key signs, the old one is still accepted.
    rotating: Web = start("web", SECRET_KEY_FALLBACKS=old_key)
    rotating.wait_ready()
    assert whoami(rotating, old_cookie).json()["user"]["email"] == email
    new_cookie = cookie_of(rotating.signed_in(email))
    assert new_cookie == sign(migrated["SECRET_KEY"], new_cookie.split(".")[0])  # the new key
    # Phase 2: the fallback is gone, and with it every cookie the old key signed: the run's
    # web has the new key alone.
    after = web
    assert whoami(after, old_cookie).status_code == 401
    assert whoami(after, new_cookie).status_code == 200


def test_fallback_keys_are_validated_and_never_printed(
    migrated: dict[str, str], old_key: str, load_config: Callable[[dict[str, str]], Outcome]
) -> None:
    # As every process reads its config (see load_config; test_settings.py starts them).
    code, output, _ = load_config(
        {**migrated, "SECRET_KEY_FALLBACKS": f"{old_key},too-short-a-key"}
    )
    assert code == 78
    assert "SECRET_KEY_FALLBACKS" in output
    assert "too-short-a-key" not in output
    assert old_key not in output
