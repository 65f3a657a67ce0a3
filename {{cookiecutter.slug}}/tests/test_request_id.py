"""X-Request-ID: a well-formed incoming id is echoed, anything else is replaced by a new one."""

import re

import pytest

from .conftest import Web, wait_until


def test_well_formed_incoming_id_is_echoed_and_logged(web: Web) -> None:
    response = web.client.get("/livez", headers={"X-Request-ID": "edge-7f3a9c21"})
    assert response.headers["x-request-id"] == "edge-7f3a9c21"
    line = wait_until(
        lambda: [r for r in web.records() if r.get("request_id") == "edge-7f3a9c21"], timeout=5
    )
    assert line[0]["path"] == "/livez"


@pytest.mark.parametrize("incoming", [None, "short", "x" * 200, "has spaces in it", "<script>"])
def test_missing_or_malformed_id_is_replaced(web: Web, incoming: str | None) -> None:
    headers = {"X-Request-ID": incoming} if incoming is not None else {}
    response = web.client.get("/livez", headers=headers)
    made = response.headers["x-request-id"]
    assert made != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_every_response_carries_an_id_errors_included(web: Web) -> None:
    for path in ("/livez", "/readyz", "/nope", "/api/v1/notes/x", "/api/v1/session"):
        assert web.client.get(path).headers.get("x-request-id")
