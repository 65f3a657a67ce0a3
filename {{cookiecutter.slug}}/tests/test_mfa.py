"""A second factor (OWASP ASVS 5 V6.5, V6.6) against real web processes: an authenticator app
enrolled with the secret shown once, logins that give a code after the password, codes good
once, recovery codes, and the changes that need the password and a code (core/mfa/,
web/api/mfa.py, web/api/session.py). Codes are computed here from the secret the API showed, as
an app would, with this file's own RFC 6238."""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg

from {{ cookiecutter.package }}.core.mfa import totp

from .conftest import PASSWORD, Web, error
from .test_mail import MailServer

STEP = 30


def code(secret: bytes, offset: int = 0) -> str:
    """What an authenticator app shows now (offset: that many 30-second steps later)."""
    counter = int(time.time()) // STEP + offset
    mac = hmac.digest(secret, struct.pack(">Q", counter), hashlib.sha1)
    start = mac[-1] & 0x0F
    return str((struct.unpack(">I", mac[start : start + 4])[0] & 0x7FFFFFFF) % 1_000_000).zfill(6)


def address() -> str:
    """A client address of the test's own: its failures count against no other test."""
    return f"10.{secrets.randbelow(200)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@dataclass
class Enrolled:
    email: str
    client: httpx.Client  # the session that enrolled
    secret: bytes
    recovery_codes: list[str]
    address: str

    def log_in(self, web: Web, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
        """A new client that gave the right password: it now owes its second factor."""
        client = web.new_client()
        client.headers["X-Forwarded-For"] = self.address
        answer = client.post("/api/v1/session", json={"email": self.email, "password": password})
        return client, answer


def enrol(web: Web, offset: int = 0) -> Enrolled:
    """A new account with an authenticator, confirmed with the code `offset` steps from now."""
    where = address()
    client = web.signed_in()
    client.headers["X-Forwarded-For"] = where
    email = client.get("/api/v1/session").json()["user"]["email"]
    started = client.post("/api/v1/mfa/totp")
    assert started.status_code == 201, started.text
    secret = base64.b32decode(started.json()["secret"] + "=" * (-len(started.json()["secret"]) % 8))
    confirmed = client.post("/api/v1/mfa/totp/confirm", json={"code": code(secret, offset)})
    assert confirmed.status_code == 200, confirmed.text
    return Enrolled(email, client, secret, confirmed.json()["recovery_codes"], where)


def session_cookies(client: httpx.Client) -> set[str]:
    return {name for name in client.cookies if "session" in name}


def test_the_codes_are_rfc_6238s() -> None:
    # RFC 6238 appendix B (SHA-1 secret), the last six of its eight digits.
    secret = b"12345678901234567890"
    assert totp.code_at(secret, 59 // STEP) == "287082"
    assert totp.code_at(secret, 1111111109 // STEP) == "081804"
    assert totp.code_at(secret, 2000000000 // STEP) == "279037"


def test_enrolment_shows_the_secret_once_and_turns_on_only_after_a_code(
    web: Web, db: psycopg.Connection[Any]
) -> None:
    client = web.signed_in()
    email = client.get("/api/v1/session").json()["user"]["email"]
    started = client.post("/api/v1/mfa/totp")
    assert started.status_code == 201, started.text
    shown = started.json()
    uri = urlsplit(shown["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert email in uri.path
    assert parse_qs(uri.query)["secret"] == [shown["secret"]]
    secret = base64.b32decode(shown["secret"] + "=" * (-len(shown["secret"]) % 8))
    assert len(secret) >= 20

    # Not on yet: a login still needs the password only, and the status says off.
    assert client.get("/api/v1/mfa").json() == {"totp": False, "recovery_codes_left": 0}
    assert web.signed_in(email).get("/api/v1/session").status_code == 200

    # Kept encrypted: the stored value holds neither the secret nor its base32.
    user_id = client.get("/api/v1/session").json()["user"]["id"]
    row = db.execute("SELECT secret FROM totp_factors WHERE user_id = %s", [user_id]).fetchone()
    assert row is not None
    assert secret not in bytes(row[0])
    assert shown["secret"].encode() not in bytes(row[0])

    wrong = client.post("/api/v1/mfa/totp/confirm", json={"code": code(secret, offset=5)})
    assert wrong.status_code == 400, wrong.text
    assert client.get("/api/v1/mfa").json()["totp"] is False

    confirmed = client.post("/api/v1/mfa/totp/confirm", json={"code": code(secret)})
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(set(codes)) == len(codes) == 10
    assert client.get("/api/v1/mfa").json() == {"totp": True, "recovery_codes_left": 10}
    # Shown once: asking again is refused while it is on, and shows no secret.
    again = client.post("/api/v1/mfa/totp")
    assert again.status_code == 409, again.text
    assert shown["secret"] not in again.text
    stored = db.execute("SELECT code_hash FROM recovery_codes WHERE user_id = %s", [user_id])
    hashes = {row[0] for row in stored}
    assert len(hashes) == 10
    assert not hashes & {c.replace("-", "") for c in codes}


def test_with_a_second_factor_the_password_alone_starts_no_session(web: Web) -> None:
    enrolled = enrol(web)
    client, answer = enrolled.log_in(web)
    assert answer.status_code == 202, answer.text
    assert answer.json()["mfa_required"] is True
    assert answer.json()["methods"] == ["totp"]
    assert not session_cookies(client)
    assert client.get("/api/v1/session").status_code == 401

    # The pending login's cookie is no session anywhere else: not even as the session cookie.
    pending = client.cookies["login-pending"]
    assert (
        web.new_client(cookies=httpx.Cookies({"session": pending}))
        .get("/api/v1/session")
        .status_code
        == 401
    )
    assert client.get("/api/v1/notes").status_code == 401

    wrong = client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, offset=5)})
    assert wrong.status_code == 401, wrong.text
    # One step ahead: enrolment used this step's code, and a code is good once.
    right = client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, offset=1)})
    assert right.status_code == 201, right.text
    assert client.get("/api/v1/session").json()["user"]["email"] == enrolled.email
    assert "login-pending" not in client.cookies
    assert client.cookies["session"] != pending


def test_the_code_step_needs_the_pending_login_of_that_client(web: Web) -> None:
    enrolled = enrol(web)
    stranger = web.new_client()
    answer = stranger.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)})
    assert answer.status_code == 401, answer.text
    assert "log in again" in error(answer)

    client, _ = enrolled.log_in(web)
    assert client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)}).is_success
    # Used: the same pending cookie cannot start a second session.
    replayed = web.new_client(cookies=httpx.Cookies({"login-pending": "x"}))
    replayed.cookies.set("login-pending", client.cookies.get("login-pending") or "gone")
    assert (
        replayed.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 0)}).status_code
        == 401
    )


def test_a_code_is_accepted_once_and_never_an_older_one(web: Web) -> None:
    enrolled = enrol(web)  # used this step's code
    first, _ = enrolled.log_in(web)
    assert first.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)}).is_success

    second, _ = enrolled.log_in(web)
    for used in (code(enrolled.secret, 1), code(enrolled.secret, 0), code(enrolled.secret, -1)):
        replay = second.post("/api/v1/session/mfa", json={"code": used})
        assert replay.status_code == 401, (used, replay.text)
    assert not session_cookies(second)


def test_two_logins_racing_with_one_code_get_one_session(web: Web) -> None:
    enrolled = enrol(web)
    clients = [enrolled.log_in(web)[0] for _ in range(4)]  # within the account's 5 attempts
    one = code(enrolled.secret, 1)
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        answers = list(
            pool.map(lambda c: c.post("/api/v1/session/mfa", json={"code": one}), clients)
        )
    assert sorted(a.status_code for a in answers) == [201] + [401] * 3


def test_a_recovery_code_logs_in_once(web: Web) -> None:
    enrolled = enrol(web)
    recovery_code = enrolled.recovery_codes[3]
    client, _ = enrolled.log_in(web)
    typed = recovery_code.upper().replace("-", " ")  # as a person may type it
    assert client.post("/api/v1/session/mfa", json={"code": typed}).status_code == 201
    assert client.get("/api/v1/mfa").json() == {"totp": True, "recovery_codes_left": 9}

    again, _ = enrolled.log_in(web)
    assert again.post("/api/v1/session/mfa", json={"code": recovery_code}).status_code == 401


def test_wrong_codes_count_against_the_account_throttle(shared: Callable[..., Any]) -> None:
    strict: Web = shared("web", LOGIN_FAILURES_PER_ACCOUNT="4/minute")
    strict.wait_ready()
    enrolled = enrol(strict)
    client, answer = enrolled.log_in(strict)  # the right password: its attempt given back
    assert answer.status_code == 202
    statuses = [
        client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 7)}).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 401]
    # The fifth attempt is refused before its code is looked at, even the right one.
    right = client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)})
    assert right.status_code == 429, right.text
    assert not session_cookies(client)


def test_turning_it_off_needs_the_password_and_a_code_and_ends_other_sessions(
    web: Web,
) -> None:
    enrolled = enrol(web)
    other, _ = enrolled.log_in(web)
    assert other.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)}).is_success
    me = enrolled.client

    def turn_off(password: str, a_code: str) -> httpx.Response:
        body = {"password": password, "code": a_code}
        return me.request("DELETE", "/api/v1/mfa/totp", json=body)

    assert turn_off("not the password at all", code(enrolled.secret, 2)).status_code == 403
    assert turn_off(PASSWORD, code(enrolled.secret, 9)).status_code == 403
    assert me.get("/api/v1/mfa").json()["totp"] is True
    assert turn_off(PASSWORD, enrolled.recovery_codes[0]).status_code == 204

    assert me.get("/api/v1/mfa").json() == {"totp": False, "recovery_codes_left": 0}
    assert other.get("/api/v1/session").status_code == 401  # ended
    assert me.get("/api/v1/session").status_code == 200  # kept
    _, answer = enrolled.log_in(web)
    assert answer.status_code == 201, answer.text  # the password alone again


def test_new_recovery_codes_replace_the_old_ones(web: Web) -> None:
    enrolled = enrol(web)
    body = {"password": PASSWORD, "code": code(enrolled.secret, 1)}
    fresh = enrolled.client.post("/api/v1/mfa/recovery-codes", json=body)
    assert fresh.status_code == 200, fresh.text
    new_codes = fresh.json()["recovery_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(enrolled.recovery_codes)

    client, _ = enrolled.log_in(web)
    old = client.post("/api/v1/session/mfa", json={"code": enrolled.recovery_codes[0]})
    assert old.status_code == 401
    assert client.post("/api/v1/session/mfa", json={"code": new_codes[0]}).status_code == 201

    stolen = web.new_client(cookies=client.cookies)  # a session alone cannot do it
    no_password = stolen.post(
        "/api/v1/mfa/recovery-codes", json={"password": "guessing", "code": new_codes[1]}
    )
    assert no_password.status_code == 403


def test_each_change_of_the_second_factor_mails_the_owner(start: Callable[..., Any]) -> None:
    mail = MailServer()
    queue = {"TASK_QUEUE": f"mfa-{secrets.token_hex(4)}", "SMTP_URL": mail.url}
    web: Web = start("web", **queue)
    start("worker", **queue)
    web.wait_ready()
    enrolled = enrol(web)
    body = {"password": PASSWORD, "code": code(enrolled.secret, 1)}
    fresh = enrolled.client.post("/api/v1/mfa/recovery-codes", json=body)
    body = {"password": PASSWORD, "code": fresh.json()["recovery_codes"][0]}
    assert enrolled.client.request("DELETE", "/api/v1/mfa/totp", json=body).status_code == 204
    notices = mail.wait_for(enrolled.email, 3)  # turned on, new codes, turned off
    mail.controller.stop()
    assert all("sign-in methods" in str(message["Subject"]) for message in notices)


def test_support_resets_the_second_factor_from_the_same_build(
    web: Web, migrated: dict[str, str]
) -> None:
    enrolled = enrol(web)
    result = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package }}", "users", "mfa-reset", enrolled.email],
        env=migrated,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = json.loads(result.stdout)
    assert line["second_factor_removed"] is True
    assert line["sessions_ended"] == 1
    assert enrolled.client.get("/api/v1/session").status_code == 401
    _, answer = enrolled.log_in(web)
    assert answer.status_code == 201, answer.text


def test_the_encryption_key_rotates_without_locking_anyone_out(
    start: Callable[..., Any], db: psycopg.Connection[Any]
) -> None:
    old_key, new_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before: Web = start("web", MFA_ENCRYPTION_KEY=old_key)
    before.wait_ready()
    enrolled = enrol(before, offset=-1)  # the clock allows a step each way: three logins
    user_id = enrolled.client.get("/api/v1/session").json()["user"]["id"]

    def sealed() -> bytes:
        row = db.execute("SELECT secret FROM totp_factors WHERE user_id = %s", [user_id])
        return bytes(row.fetchone()[0])  # type: ignore[index]

    under_old = sealed()
    alone: Web = start("web", MFA_ENCRYPTION_KEY=new_key)
    alone.wait_ready()
    client, _ = enrolled.log_in(alone)  # the new key alone cannot open it: refused, not a 500
    assert (
        client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 0)}).status_code
        == 401
    )

    rotated: Web = start("web", MFA_ENCRYPTION_KEY=new_key, MFA_ENCRYPTION_KEY_FALLBACKS=old_key)
    rotated.wait_ready()
    client, _ = enrolled.log_in(rotated)
    assert (
        client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 0)}).status_code
        == 201
    )
    assert sealed() != under_old  # sealed again under the new key at its use
    client, _ = enrolled.log_in(alone)
    assert (
        client.post("/api/v1/session/mfa", json={"code": code(enrolled.secret, 1)}).status_code
        == 201
    )
