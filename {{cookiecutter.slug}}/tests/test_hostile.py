"""Hostile input is a 4xx in the one error shape, never a 500 and never a crash: values the
database cannot hold, text PostgreSQL cannot store, odd cookies, and requests too large for the
process to hold. tests/test_fuzz.py looks for more; these are the cases it found, kept."""

import json
import socket

import httpx
import pytest

from .conftest import PLAIN_HTTP, Web, error

MIB = 1_048_576  # MAX_REQUEST_BODY_BYTES' default
HEAD_LIMIT = 32_768  # MAX_REQUEST_HEAD_BYTES' default


def raw(web: Web, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` over one connection as they are, then read the answer until it closes."""
    with socket.create_connection(("127.0.0.1", int(web.env["PORT"])), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < _length(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 0


def assert_error_shape(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["content-type"] == "application/json"
    parsed = json.loads(body)
    assert parsed["request_id"] == headers["x-request-id"], parsed
    return str(parsed["detail"])


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/api/v1/notes/{2**31}", ["path", "note_id"]),  # one past PostgreSQL's int4
        (f"/api/v1/notes/{2**63}", ["path", "note_id"]),
        ("/api/v1/notes/-1", ["path", "note_id"]),
        (f"/api/v1/notes?before={2**31}", ["query", "before"]),
    ],
)
def test_ids_the_column_cannot_hold_are_422_naming_the_field(
    web: Web, path: str, field: list[str]
) -> None:
    user = web.signed_in()
    response = user.get(path)
    assert response.status_code == 422
    error(response)
    assert [e["loc"] for e in response.json()["errors"]] == [field]
    assert user.get(f"/api/v1/notes/{2**31 - 1}").status_code == 404  # the largest id


@pytest.mark.parametrize(
    "raw_json",
    [
        rb'{"title": "nul \u0000 inside", "body": "x"}',  # PostgreSQL text cannot hold NUL
        rb'{"title": "t", "body": "lone \ud800 surrogate"}',  # not encodable as UTF-8
        rb'{"title": "t", "body": "x", "\udfff": 1}',  # and as a key, which errors would name
    ],
)
def test_text_postgres_cannot_store_is_422(web: Web, raw_json: bytes) -> None:
    response = web.signed_in().post(
        "/api/v1/notes", content=raw_json, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error(response)


def test_any_storable_text_round_trips(web: Web) -> None:
    text = "é ✓ 𝄞 \t\n\u200b \x01 end"  # accents, astral plane, controls other than NUL
    user = web.signed_in()
    created = user.post("/api/v1/notes", json={"title": text, "body": text})
    assert created.status_code == 201, created.text
    assert user.get(f"/api/v1/notes/{created.json()['id']}").json()["body"] == text


def test_a_cookie_that_is_not_ascii_is_refused_not_crashed_on(web: Web) -> None:
    cookie = [(b"cookie", "session=abc.\xe9\xe9".encode("latin-1"))]
    assert web.client.get("/api/v1/session", headers=cookie).status_code == 401
    posted = web.client.post("/api/v1/notes", json={"title": "t", "body": "b"}, headers=cookie)
    assert posted.status_code == 401  # no session, and no crash


def test_validation_errors_never_echo_what_was_sent(web: Web) -> None:
    typed = "hunter2 is my password"
    attempt = {"email": typed * 20, "password": typed, "extra": typed}  # email too long
    response = web.client.post("/api/v1/session", json=attempt)
    assert response.status_code == 422
    assert "hunter2" not in response.text
    body = response.json()
    assert set(body) == {"detail", "request_id", "errors"}
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "email"), ("body", "extra")}
    for item in body["errors"]:
        assert set(item) == {"loc", "msg", "type"}  # no `input`, no `ctx`
    assert "body.email" in body["detail"]


def test_a_body_announced_too_large_is_refused_before_it_is_sent(web: Web) -> None:
    head = (
        b"POST /api/v1/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (MIB + 1)
    )
    detail = assert_error_shape(*raw(web, head), 413)  # not a byte of the body was sent
    assert str(MIB) in detail


def test_a_chunked_body_is_refused_once_it_passes_the_limit(web: Web) -> None:
    head = (
        b"POST /api/v1/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    # 17 chunks (1.06 MiB), and never the final empty chunk: the answer cannot wait for the end.
    assert_error_shape(*raw(web, head, chunk * 17), 413)


def test_a_body_within_the_limit_is_read(web: Web) -> None:
    padded = b'{"title": "t", "body": "b"}'.ljust(MIB - 1024)  # JSON allows the whitespace
    response = web.signed_in().post(
        "/api/v1/notes", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * HEAD_LIMIT + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * HEAD_LIMIT + b"\r\n\r\n", 431),
        (b"GET /livez HTTP/1.1\r\n" + b"X-Many: a\r\n" * 4000 + b"\r\n", 431),
        # A header still arriving, never ended: refused once it outgrows the limit.
        (b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"a" * (HEAD_LIMIT + 70_000), 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
def test_heads_past_the_limits_are_4xx_json_and_the_process_serves_on(
    web: Web, request_bytes: bytes, status: int
) -> None:
    assert_error_shape(*raw(web, request_bytes), status)
    assert web.client.get("/livez").status_code == 200
    # Big, within the limit.
    ok = httpx.get(f"{web.url}/livez", headers={"X-Fine": "a" * 8000}, verify=PLAIN_HTTP)
    assert ok.status_code == 200


def test_405_names_every_method_of_the_path(web: Web) -> None:
    response = web.client.put("/api/v1/session")
    assert response.status_code == 405
    assert error(response) == "Method Not Allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST", "DELETE"}


def test_a_login_email_postgres_cannot_store_is_422(web: Web) -> None:
    sent = {"email": "ann\x00@example.com", "password": "a long and unguessable pass phrase"}
    response = web.client.post("/api/v1/session", json=sent)
    assert response.status_code == 422  # was a 500: the lookup by email reached PostgreSQL
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "email"]]
