"""Factor XII, admin processes: `users create|disable|list` run from the same build and config as
web, print JSON lines, take passwords only from stdin or the environment, and fail in one line."""

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import PASSWORD, Web, error, new_email


def users(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package }}", "users", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def parsed(
    parse: Callable[[list[str]], object], capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """What an admin command makes of arguments it refuses as it parses them, the first thing
    it does (its `main`), run in this test process: no process start, a second of CPU each."""
    capsys.readouterr()
    try:
        parse(list(args))
        code: object = 0  # taken: a process would go on to run the command
    except SystemExit as stopped:
        code = stopped.code
    output = capsys.readouterr()
    assert isinstance(code, int), code
    return subprocess.CompletedProcess(args, code, output.out, output.err)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["level"] in {"error", "critical"}
    for word in words:
        assert word in lines[0]


def test_create_takes_the_password_from_stdin_or_the_environment(
    web: Web, migrated: dict[str, str]
) -> None:
    admin, other = new_email("admin"), new_email()
    created = users(migrated, "create", admin, "--admin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    line = json.loads(created.stdout)
    assert (line["email"], line["is_admin"], line["is_active"]) == (admin, True, True)
    from_env = users({**migrated, "NEW_USER_PASSWORD": PASSWORD}, "create", other)
    assert from_env.returncode == 0, from_env.stderr
    for email in (admin, other):  # the web process logs them in: one build, one database
        client = web.signed_in(email)
        assert client.get("/api/v1/session").json()["user"]["email"] == email
    listed = [json.loads(line) for line in users(migrated, "list").stdout.splitlines()]
    assert {admin, other} <= {user["email"] for user in listed}
    assert PASSWORD not in created.stdout + created.stderr + from_env.stdout


def test_verify_and_create_verified_mark_the_address_confirmed(
    start: Callable[..., Any], migrated: dict[str, str]
) -> None:
    web: Web = start("web", EMAIL_VERIFICATION="mandatory")
    verified, later = new_email("verified"), new_email("later")
    made = users(migrated, "create", verified, "--verified", stdin=PASSWORD)
    assert json.loads(made.stdout)["email_verified"] is True
    assert (
        json.loads(users(migrated, "create", later, stdin=PASSWORD).stdout)["email_verified"]
        is False
    )
    web.wait_ready()
    credentials = {"email": later, "password": PASSWORD}
    assert web.new_client().post("/api/v1/session", json=credentials).status_code == 403
    line = json.loads(users(migrated, "verify", later).stdout)
    assert line["email_verified"] is True
    assert web.new_client().post("/api/v1/session", json=credentials).status_code == 201
    assert web.signed_in(verified).get("/api/v1/session").status_code == 200
    one_line_error(users(migrated, "verify", new_email()), "no account")


def test_bad_input_is_one_line_and_a_non_zero_exit(
    migrated: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from {{ cookiecutter.package }}.admin.users import parse  # here: collecting the tests needs none of it

    taken = new_email()
    assert users(migrated, "create", taken, stdin=PASSWORD).returncode == 0
    one_line_error(users(migrated, "create", "not-an-email", stdin=PASSWORD), "email")
    weak = users(migrated, "create", new_email(), stdin="password1234")
    one_line_error(weak, "too common")
    assert "password1234" not in weak.stdout + weak.stderr
    one_line_error(users(migrated, "create", taken.upper(), stdin=PASSWORD), "exists")
    # There is no way to pass a password as an argument: it would be in `ps` and shell history.
    # (Refused as the arguments are parsed, as is an unknown command: see `parsed`.)
    one_line_error(parsed(parse, capsys, "create", new_email(), "--password", PASSWORD))
    one_line_error(users(migrated, "disable", new_email()), "no account")
    one_line_error(parsed(parse, capsys, "frobnicate"))


def test_disabling_a_user_ends_their_sessions_and_refuses_logins(
    web: Web, migrated: dict[str, str]
) -> None:
    email = web.sign_up()
    clients = [web.signed_in(email) for _ in range(2)]
    disabled = users(migrated, "disable", email)
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["sessions_ended"] == 2
    for client in clients:
        assert client.get("/api/v1/session").status_code == 401
    login = web.new_client().post("/api/v1/session", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    assert error(login) == "wrong email or password"  # the same answer as any failure
