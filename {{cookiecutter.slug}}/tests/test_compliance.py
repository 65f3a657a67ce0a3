"""The classic quick twelve-factor check, as tests: swap the database by environment alone, run
two instances side by side, find the logs on stdout, restart without losing anything."""

import secrets
import signal
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from dev import services

from .conftest import PROCFILE, ROOT, Web, fresh_database, release


@pytest.fixture
def other_database(servers: services.Servers) -> Iterator[str]:
    with fresh_database(servers.postgres, "test_other") as url:
        yield url


def count_notes(url: str, title: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM notes WHERE title = %s", [title]).fetchone()
    return int(row[0]) if row else 0


def test_every_process_type_runs_from_one_codebase() -> None:
    assert set(PROCFILE) == {"release", "web", "worker", "clock"}
    for kind, command in PROCFILE.items():
        assert command == f"exec python -m {{ cookiecutter.package }} {kind}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"-m", "{{ cookiecutter.package }}", "web"' in dockerfile  # the same build, every type


def test_database_is_swapped_by_environment_alone(
    start: Callable[..., Any], migrated: dict[str, str], other_database: str
) -> None:
    release({**migrated, "DATABASE_URL": other_database})
    web: Web = start("web", DATABASE_URL=other_database)
    web.wait_ready()
    title = f"swapped-{secrets.token_hex(3)}"
    client = web.signed_in()
    assert client.post("/api/v1/notes", json={"title": title, "body": "x"}).status_code == 201
    assert count_notes(other_database, title) == 1
    assert count_notes(migrated["DATABASE_URL"], title) == 0


def test_two_instances_side_by_side_serve_the_same_data(shared: Callable[..., Any]) -> None:
    a: Web = shared("web", 1)
    b: Web = shared("web", 2)
    a.wait_ready()
    b.wait_ready()
    on_a = a.signed_in()
    note = on_a.post("/api/v1/notes", json={"title": "shared", "body": "x"}).json()
    on_b = b.new_client(cookies=on_a.cookies)
    assert on_b.get(f"/api/v1/notes/{note['id']}").json()["title"] == "shared"


def log_files() -> dict[str, int]:
    """Each *.log file under the project, with its size: a new file or a grown one shows."""
    return {str(path.relative_to(ROOT)): path.stat().st_size for path in ROOT.rglob("*.log")}


def test_logs_are_an_event_stream_on_stdout_not_files(start: Callable[..., Any]) -> None:
    before = log_files()
    web: Web = start("web")
    web.wait_ready()
    web.client.get("/livez", headers={"X-Request-ID": "stdout-check-1"})
    web.stop(signal.SIGTERM)
    assert any('"request_id":"stdout-check-1"' in line for line in web.stdout)
    assert log_files() == before


def test_restart_loses_nothing(start: Callable[..., Any]) -> None:
    first: Web = start("web")
    first.wait_ready()
    email = first.sign_up()
    client = first.signed_in(email)
    note = client.post("/api/v1/notes", json={"title": "kept", "body": "x"}).json()
    assert first.stop(signal.SIGTERM) == 0

    second: Web = start("web", PORT=first.env["PORT"])
    second.wait_ready()
    # The same client, cookie and all: its session and its note outlived the process.
    assert client.get(f"/api/v1/notes/{note['id']}").json()["title"] == "kept"
    assert client.get("/api/v1/session").json()["user"]["email"] == email
