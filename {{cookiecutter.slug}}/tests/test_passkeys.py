"""Passkeys through the API of a real web process, with a software authenticator (authenticator.py)
making real attestation and assertion bytes: registration, list, rename, remove, a login with a
passkey alone, a passkey as the second factor after a password, and the answers the service
must refuse (another origin, a replayed challenge, a counter gone backwards, no user
verification).

The shared `web` runs with PUBLIC_URL's default, so the service expects the origin
http://localhost:8000 and the RP ID `localhost`: what the authenticator claims unless told not to.
"""

import json
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from .authenticator import ORIGIN, Authenticator, b64u
from .conftest import PASSWORD, Outcome, Web, error
from .test_admin import users

API = "/api/v1"


def one(db: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row


def register(client: httpx.Client, authenticator: Authenticator, name: str = "Laptop") -> Any:
    options = client.post(f"{API}/passkeys/registration/options")
    assert options.status_code == 200, options.text
    answer = authenticator.create(options.json())
    response = client.post(f"{API}/passkeys", json={"credential": answer, "name": name})
    assert response.status_code == 201, response.text
    return response.json()


def with_passkey(web: Web, synced: bool = False) -> tuple[str, httpx.Client, Authenticator]:
    email = web.sign_up()
    client = web.signed_in(email)
    authenticator = Authenticator(synced=synced)
    register(client, authenticator)
    return email, client, authenticator


def passkey_login(web: Web, authenticator: Authenticator, **bend: Any) -> httpx.Response:
    client = web.new_client()
    options = client.post(f"{API}/passkeys/login/options")
    assert options.status_code == 200, options.text
    return client.post(
        f"{API}/passkeys/login", json={"credential": authenticator.get(options.json(), **bend)}
    )


def test_registration_asks_for_a_discoverable_user_verified_passkey(web: Web) -> None:
    options = web.signed_in().post(f"{API}/passkeys/registration/options").json()
    assert options["rp"]["id"] == "localhost"
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "required"
    assert selection["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert len(options["challenge"]) >= 22  # at least 16 random bytes


def test_register_list_rename_remove(web: Web, db: psycopg.Connection[Any]) -> None:
    _email, client, authenticator = with_passkey(web, synced=True)
    items = client.get(f"{API}/passkeys").json()["items"]
    assert len(items) == 1
    passkey = items[0]
    assert passkey["name"] == "Laptop"
    assert passkey["backup_eligible"] is True
    assert passkey["backed_up"] is True
    assert passkey["transports"] == ["internal"]
    assert passkey["aaguid"] == "00000000-0000-0000-0000-000000000000"
    assert passkey["last_used_at"] is None
    stored = one(db, "SELECT credential_id, sign_count FROM passkeys WHERE id = %s", passkey["id"])
    assert bytes(stored[0]) == authenticator.credential_id
    assert stored[1] == 0

    renamed = client.patch(f"{API}/passkeys/{passkey['id']}", json={"name": "  Phone  "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Phone"
    assert client.get(f"{API}/passkeys").json()["items"][0]["name"] == "Phone"

    # Another account sees none of it and can change none of it.
    stranger = web.signed_in()
    assert stranger.get(f"{API}/passkeys").json()["items"] == []
    assert stranger.patch(f"{API}/passkeys/{passkey['id']}", json={"name": "x"}).status_code == 404
    gone = stranger.request(
        "DELETE", f"{API}/passkeys/{passkey['id']}", json={"password": PASSWORD}
    )
    assert gone.status_code == 404

    # Removing needs the password, not the session alone.
    wrong = client.request("DELETE", f"{API}/passkeys/{passkey['id']}", json={"password": "nope"})
    assert wrong.status_code == 403, wrong.text
    removed = client.request(
        "DELETE", f"{API}/passkeys/{passkey['id']}", json={"password": PASSWORD}
    )
    assert removed.status_code == 204, removed.text
    assert client.get(f"{API}/passkeys").json()["items"] == []
    assert passkey_login(web, authenticator).status_code == 401  # the removed one opens nothing


def test_adding_a_passkey_ends_the_other_sessions(web: Web) -> None:
    email = web.sign_up()
    client, other = web.signed_in(email), web.signed_in(email)
    register(client, Authenticator())
    assert other.get(f"{API}/session").status_code == 401
    assert client.get(f"{API}/session").status_code == 200


def test_the_same_passkey_twice_is_a_conflict(web: Web) -> None:
    _, client, authenticator = with_passkey(web)
    options = client.post(f"{API}/passkeys/registration/options").json()
    excluded = [d["id"] for d in options["excludeCredentials"]]
    assert excluded == [b64u(authenticator.credential_id)]
    again = client.post(f"{API}/passkeys", json={"credential": authenticator.create(options)})
    assert again.status_code == 409, again.text


def test_login_with_a_passkey_alone(web: Web, db: psycopg.Connection[Any]) -> None:
    email, _, authenticator = with_passkey(web)
    client = web.new_client()
    options = client.post(f"{API}/passkeys/login/options").json()
    assert options["allowCredentials"] == []  # discoverable: no email asked, none listed
    assert options["userVerification"] == "required"
    response = client.post(f"{API}/passkeys/login", json={"credential": authenticator.get(options)})
    assert response.status_code == 201, response.text
    assert response.json()["user"]["email"] == email
    assert client.get(f"{API}/session").json()["user"]["email"] == email
    row = one(
        db,
        "SELECT sign_count, last_used_at FROM passkeys WHERE credential_id = %s",
        authenticator.credential_id,
    )
    assert row[0] == 1
    assert row[1] is not None


def test_a_password_login_with_a_passkey_on_asks_for_it(web: Web) -> None:
    email, _, authenticator = with_passkey(web)
    client = web.new_client()
    login = client.post(f"{API}/session", json={"email": email, "password": PASSWORD})
    assert login.status_code == 202, login.text
    assert login.json()["mfa_required"] is True
    assert login.json()["methods"] == ["passkey"]
    assert client.get(f"{API}/session").status_code == 401  # no session yet

    options = client.post(f"{API}/passkeys/second-factor/options")
    assert options.status_code == 200, options.text
    allowed = [d["id"] for d in options.json()["allowCredentials"]]
    assert allowed == [b64u(authenticator.credential_id)]
    answer = authenticator.get(options.json())
    done = client.post(f"{API}/passkeys/second-factor", json={"credential": answer})
    assert done.status_code == 201, done.text
    assert client.get(f"{API}/session").json()["user"]["email"] == email
    # The pending login is used up: it gives no second session.
    again = client.post(f"{API}/passkeys/second-factor/options")
    assert again.status_code == 401, again.text


def test_a_second_factor_needs_a_pending_login_and_the_accounts_own_passkey(web: Web) -> None:
    assert web.new_client().post(f"{API}/passkeys/second-factor/options").status_code == 401
    email, _, _ = with_passkey(web)
    _, _, stranger = with_passkey(web)
    client = web.new_client()
    client.post(f"{API}/session", json={"email": email, "password": PASSWORD})
    options = client.post(f"{API}/passkeys/second-factor/options").json()
    # Another account's passkey, however valid, is not this login's second factor.
    wrong = client.post(f"{API}/passkeys/second-factor", json={"credential": stranger.get(options)})
    assert wrong.status_code == 401, wrong.text
    assert client.get(f"{API}/session").status_code == 401


def test_an_answer_from_another_origin_is_refused(web: Web) -> None:
    _, client, authenticator = with_passkey(web)
    phishing = "http://localhost.evil.example:8000"
    assert passkey_login(web, authenticator, origin=phishing).status_code == 401
    assert passkey_login(web, authenticator, origin="http://localhost:8001").status_code == 401
    options = client.post(f"{API}/passkeys/registration/options").json()
    other = Authenticator().create(options, origin=phishing)
    refused = client.post(f"{API}/passkeys", json={"credential": other})
    assert refused.status_code == 400, refused.text
    assert "origin" in error(refused).lower()
    assert passkey_login(web, authenticator).status_code == 201  # the right origin still works


def test_a_replayed_challenge_is_refused(web: Web) -> None:
    _, client, authenticator = with_passkey(web)
    login = web.new_client()
    options = login.post(f"{API}/passkeys/login/options").json()
    answer = authenticator.get(options)
    assert login.post(f"{API}/passkeys/login", json={"credential": answer}).status_code == 201
    replay = web.new_client().post(f"{API}/passkeys/login", json={"credential": answer})
    assert replay.status_code == 400, replay.text
    assert "challenge" in error(replay)
    # A fresh signature over a used challenge is no better.
    again = authenticator.get(options)
    assert (
        web.new_client().post(f"{API}/passkeys/login", json={"credential": again}).status_code
        == 400
    )
    # Nor is a challenge issued for another ceremony: a login's cannot register a passkey.
    login_options = web.new_client().post(f"{API}/passkeys/login/options").json()
    creation = client.post(f"{API}/passkeys/registration/options").json()
    forged = Authenticator().create({**creation, "challenge": login_options["challenge"]})
    assert client.post(f"{API}/passkeys", json={"credential": forged}).status_code == 400


def test_a_counter_that_goes_backwards_is_refused_and_logged(
    web: Web, db: psycopg.Connection[Any]
) -> None:
    _, _, authenticator = with_passkey(web)
    assert passkey_login(web, authenticator, sign_count=5).status_code == 201
    cloned = passkey_login(web, authenticator, sign_count=3)
    assert cloned.status_code == 401, cloned.text
    same = passkey_login(web, authenticator, sign_count=5)
    assert same.status_code == 401, same.text
    record = web.wait_for_log("counter went backwards")
    assert record["level"] == "warning"
    assert record["stored_sign_count"] == 5
    count = one(
        db, "SELECT sign_count FROM passkeys WHERE credential_id = %s", authenticator.credential_id
    )
    assert count[0] == 5
    assert passkey_login(web, authenticator, sign_count=6).status_code == 201


def test_a_passkey_without_user_verification_is_refused(web: Web) -> None:
    client = web.signed_in()
    authenticator = Authenticator()
    options = client.post(f"{API}/passkeys/registration/options").json()
    unverified = client.post(
        f"{API}/passkeys", json={"credential": authenticator.create(options, uv=False)}
    )
    assert unverified.status_code == 400, unverified.text
    assert client.get(f"{API}/passkeys").json()["items"] == []

    _, _, registered = with_passkey(web)
    assert passkey_login(web, registered, uv=False).status_code == 401
    assert passkey_login(web, registered).status_code == 201


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {}},
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {"clientDataJSON": "%%"}},
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(json.dumps({"challenge": 7, "origin": ORIGIN}).encode()),
                "authenticatorData": "AA",
                "signature": "AA",
            },
        },
    ],
)
def test_garbage_answers_are_client_errors(web: Web, credential: dict[str, Any]) -> None:
    client = web.signed_in()
    for path in ("passkeys", "passkeys/login", "passkeys/second-factor"):
        response = client.post(f"{API}/{path}", json={"credential": credential})
        assert 400 <= response.status_code < 500, (path, response.text)
        error(response)


def test_the_account_page_runs_under_a_strict_policy(web: Web) -> None:
    page = web.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ):
        assert directive in policy
    assert "unsafe-inline" not in policy
    html = page.text
    assert "<script src=" in html
    assert "<script>" not in html
    assert "style=" not in html
    for asset, kind in (("/account.js", "text/javascript"), ("/account.css", "text/css")):
        response = web.client.get(asset)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    # The API keeps its own, stricter policy.
    api = web.client.get(f"{API}/session")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_mfa_reset_removes_the_passkeys_and_ends_the_sessions(
    web: Web, migrated: dict[str, str]
) -> None:
    email, client, authenticator = with_passkey(web)
    result = users(migrated, "mfa-reset", email)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[-1])
    assert line["passkeys_removed"] == 1
    assert client.get(f"{API}/session").status_code == 401
    assert passkey_login(web, authenticator).status_code == 401
    # The password alone logs in again: no second factor is left.
    login = web.new_client().post(f"{API}/session", json={"email": email, "password": PASSWORD})
    assert login.status_code == 201, login.text


def test_passkey_settings_must_fit_their_origins(
    migrated: dict[str, str], load_config: Callable[[dict[str, str]], Outcome]
) -> None:
    # As every process reads its config (see load_config): each refusal a process start less.
    for bad in (
        {"WEBAUTHN_RP_ID": "example.com"},  # not localhost's parent
        {"WEBAUTHN_ORIGINS": "http://app.example.com"},  # passkeys need HTTPS there
        {"WEBAUTHN_ORIGINS": "https://a.example.com", "WEBAUTHN_RP_ID": "b.example.com"},
    ):
        code, output, _ = load_config({**migrated, **bad})
        assert code == 78, output
        assert "WEBAUTHN" in output or "passkeys" in output
    good = {"WEBAUTHN_ORIGINS": "https://app.example.com", "WEBAUTHN_RP_ID": "example.com"}
    assert load_config({**migrated, **good})[0] == 0
    # No passkeys there, but the service runs: a process, to the end.
    assert users({**migrated, "PUBLIC_URL": "http://devbox.lan:8000"}, "list").returncode == 0
