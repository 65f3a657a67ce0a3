"""What a browser is told (OWASP ASVS 5 V3.4): the security headers on every answer, the API
docs under their own policy or not at all, and CORS for listed origins only, agreeing with the
cross-site check. Against real web processes (web/headers.py, web/cors.py, web/docs.py)."""

import base64
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import PASSWORD, Outcome, Web, error
from .test_hostile import raw
from .test_settings import run_process

SAME_FOR_EVERY_ANSWER = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}
FRONT_END = "https://app.example.com"
NOTE = {"title": "t", "body": "b"}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SAME_FOR_EVERY_ANSWER.items():
        assert response.headers.get_list(name) == [value], (name, response.request.url)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def preflight(client: httpx.Client, origin: str, path: str = "/api/v1/notes") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    return client.options(path, headers=headers)


def test_every_answer_carries_the_security_headers(web: Web) -> None:
    user = web.signed_in()
    answers = [
        web.client.get("/livez"),
        web.client.get("/readyz"),
        web.client.get("/openapi.json"),
        web.client.get("/no/such/path"),  # the router's 404
        web.client.post(
            "/api/v1/users", content=b"{", headers={"content-type": "application/json"}
        ),
        web.client.get("/api/v1/session"),  # 401
        user.get("/api/v1/session"),  # 200, the account's own data
        user.get("/api/v1/sessions"),
        # Answers made by the middleware itself, before any route: the cross-site 403, the 413.
        user.post("/api/v1/notes", json=NOTE, headers={"Origin": "https://evil.example"}),
        web.client.post("/api/v1/users", content=b"x" * 2_000_000),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 404, 422, 401, 200, 200, 403, 413]
    for response in answers:
        assert_security_headers(response)
        # Plain http, cookies not Secure (SESSION_COOKIE_SECURE=false): never pinned to HTTPS.
        assert "strict-transport-security" not in response.headers
    # And the answers the HTTP layer makes before the app sees a request (web/protocol.py).
    for request in (b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
                    b"NOT HTTP AT ALL\r\n\r\n"):  # fmt: skip
        status, headers, _ = raw(web, request)
        assert status in (400, 431)
        for name, value in SAME_FOR_EVERY_ANSWER.items():
            assert headers.get(name) == value, (name, status)


def test_answers_of_the_session_are_never_stored(web: Web) -> None:
    user = web.signed_in()
    for response in (user.get("/api/v1/session"), user.get("/api/v1/notes")):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
    logged_in = web.new_client().post(
        "/api/v1/session",
        json={"email": web.sign_up(), "password": PASSWORD},
    )
    assert "set-cookie" in logged_in.headers
    assert logged_in.headers["cache-control"] == "no-store"


def test_hsts_for_a_year_whenever_cookies_are_secure(shared: Callable[..., Any]) -> None:
    web: Web = shared("web", SESSION_COOKIE_SECURE="true")
    web.wait_ready()
    for response in (web.client.get("/livez"), web.client.get("/api/v1/session")):
        hsts = response.headers["strict-transport-security"]
        max_age = re.search(r"max-age=(\d+)", hsts)
        assert max_age, hsts
        assert int(max_age[1]) >= 365 * 86_400, hsts
        assert "includeSubDomains" in hsts
        assert_security_headers(response)


def test_api_docs_are_off_by_default_and_under_their_own_policy_when_on(
    web: Web, shared: Callable[..., Any]
) -> None:
    for path in ("/docs", "/redoc"):
        assert web.client.get(path).status_code == 404
    assert web.client.get("/openapi.json").status_code == 200  # the schema stays, for tools

    docs_web: Web = shared("web", API_DOCS="on")
    docs_web.wait_ready()
    page = docs_web.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    (policy,) = page.headers.get_list("content-security-policy")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'"
    # The one inline script that boots Swagger UI is allowed by its hash, nothing else inline.
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert scripts
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"].split()
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # Every other answer keeps the API's strict policy.
    assert_security_headers(docs_web.client.get("/openapi.json"))


def test_cors_off_by_default(web: Web) -> None:
    assert cors_headers(preflight(web.client, FRONT_END)) == {}
    answer = web.client.get("/livez", headers={"Origin": FRONT_END})
    assert cors_headers(answer) == {}


def test_cors_allows_listed_origins_with_credentials_and_agrees_with_the_csrf_check(
    shared: Callable[..., Any],
) -> None:
    # Written the way people write URLs; browsers send https://app.example.com.
    web: Web = shared("web", CORS_ORIGINS="https://App.example.com:443/, http://127.0.0.2:5173")
    web.wait_ready()

    listed = preflight(web.client, FRONT_END)
    assert listed.status_code == 204
    assert_security_headers(listed)
    assert listed.headers["access-control-allow-origin"] == FRONT_END  # exact, never *
    assert listed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in listed.headers["access-control-allow-methods"]
    assert "content-type" in listed.headers["access-control-allow-headers"]
    assert int(listed.headers["access-control-max-age"]) > 0  # the preflight is cached
    assert "origin" in listed.headers["vary"].lower()
    other_port = preflight(web.client, "http://127.0.0.2:5173")
    assert other_port.headers["access-control-allow-origin"] == "http://127.0.0.2:5173"

    for stranger in ("https://evil.example", "https://app.example.com.evil.example",
                     "http://app.example.com", "null"):  # fmt: skip
        refused = preflight(web.client, stranger)
        assert cors_headers(refused) == {}, stranger
        assert refused.status_code != 204

    # The real requests: a listed origin may use its cookie, reads the answer; others may not.
    user = web.signed_in()
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    created = user.post("/api/v1/notes", json=NOTE, headers={**cross_site, "Origin": FRONT_END})
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == FRONT_END
    assert created.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in created.headers["access-control-expose-headers"].lower()
    read = user.get("/api/v1/session", headers={**cross_site, "Origin": FRONT_END})
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == FRONT_END

    forged = user.post(
        "/api/v1/notes", json=NOTE, headers={**cross_site, "Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert error(forged) == "cross-origin request refused"
    assert cors_headers(forged) == {}
    unread = user.get("/api/v1/session", headers={**cross_site, "Origin": "https://evil.example"})
    assert cors_headers(unread) == {}


@pytest.mark.timing
def test_cors_origins_are_validated_at_start(
    base_env: dict[str, str], load_config: Callable[[dict[str, str]], Outcome]
) -> None:
    for bad in ("*", "https://*.example.com", "null", "app.example.com",
                "https://app.example.com/path", "https://user@app.example.com",
                "ftp://app.example.com"):  # fmt: skip
        env = {**base_env, "CORS_ORIGINS": bad}
        # The first as a web process, the others as every process reads its config (load_config).
        code, output, elapsed = run_process("web", env) if bad == "*" else load_config(env)
        assert code == 78, (bad, output)
        assert elapsed < 3
        (line,) = [json.loads(line) for line in output.splitlines() if line.strip()]
        assert "CORS_ORIGINS" in line["event"], (bad, line)
    # The old name of the trusted list stops the process rather than being silently ignored.
    code, output, _ = load_config({**base_env, "TRUSTED_ORIGINS": FRONT_END})
    assert code == 78
    assert "CORS_ORIGINS" in output
