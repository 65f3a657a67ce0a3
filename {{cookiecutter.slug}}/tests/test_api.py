"""The notes API: stored in PostgreSQL, owned by their author, described by OpenAPI; bad
requests get 4xx JSON."""

import pytest

from .conftest import Web, error


def test_create_read_and_list_notes(web: Web) -> None:
    user = web.signed_in()
    created = user.post("/api/v1/notes", json={"title": "first", "body": "a b c"})
    assert created.status_code == 201
    note = created.json()
    assert note["title"] == "first"
    assert note["word_count"] is None  # enrichment is the worker's job, later
    assert note["enriched"] is False

    fetched = user.get(f"/api/v1/notes/{note['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["body"] == "a b c"

    ids = [
        user.post("/api/v1/notes", json={"title": f"n{i}", "body": ""}).json()["id"]
        for i in range(3)
    ]
    page = user.get("/api/v1/notes", params={"limit": 2}).json()
    assert [n["id"] for n in page["items"]] == ids[::-1][:2]  # newest first
    older = user.get("/api/v1/notes", params={"limit": 2, "before": page["next_before"]})
    assert older.json()["items"][0]["id"] == ids[0]


def test_missing_note_is_a_json_404(web: Web) -> None:
    response = web.signed_in().get("/api/v1/notes/987654321")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert error(response) == "note not found"


def test_notes_belong_to_their_author(web: Web) -> None:
    ann, bob = web.signed_in(), web.signed_in()
    note = ann.post("/api/v1/notes", json={"title": "ann's", "body": "private"}).json()
    # Bob cannot read it, and cannot tell it exists: the same 404 as for no note at all.
    theirs = bob.get(f"/api/v1/notes/{note['id']}")
    missing = bob.get("/api/v1/notes/987654321")
    assert theirs.status_code == missing.status_code == 404
    assert error(theirs) == error(missing)
    assert note["id"] not in [n["id"] for n in bob.get("/api/v1/notes").json()["items"]]
    assert note["id"] in [n["id"] for n in ann.get("/api/v1/notes").json()["items"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/notes"), ("GET", "/api/v1/notes/1"), ("POST", "/api/v1/notes")],
)
def test_notes_need_a_session(web: Web, method: str, path: str) -> None:
    response = web.client.request(method, path, json={"title": "t", "body": "b"})
    assert response.status_code == 401
    assert error(response) == "no session"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/v1/notes/not-a-number", {}),
        ("GET", "/api/v1/notes", {"params": {"limit": 0}}),
        ("POST", "/api/v1/notes", {"content": b"{not json"}),
        ("POST", "/api/v1/notes", {"json": {"title": "", "body": "x"}}),
        ("POST", "/api/v1/notes", {"json": {"title": "t" * 201, "body": "x"}}),
        ("POST", "/api/v1/notes", {"json": {"title": "t", "body": "x", "extra": 1}}),
        ("POST", "/api/v1/notes", {"json": ["a", "list"]}),
        ("POST", "/api/v1/session", {"json": {"username": "no such field"}}),
        ("POST", "/api/v1/users", {"json": {"email": "not-an-email", "password": "x" * 20}}),
    ],
)
def test_invalid_requests_get_4xx_json(
    web: Web, method: str, path: str, kwargs: dict[str, object]
) -> None:
    response = web.signed_in().request(method, path, **kwargs)  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500
    assert error(response)


def test_unknown_route_and_method_are_json(web: Web) -> None:
    assert web.client.get("/nope").status_code == 404
    assert error(web.client.get("/nope")) == "Not Found"
    assert web.client.put("/api/v1/notes").status_code == 405


def test_openapi_describes_the_versioned_api(web: Web) -> None:
    paths = web.client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/notes", "/api/v1/notes/{note_id}", "/api/v1/session"} <= set(paths)
    assert {"/api/v1/users", "/api/v1/sessions", "/api/v1/sessions/{session_id}"} <= set(paths)
    assert "/api/v1/heartbeats" in paths
