"""What the fuzzer (tests/test_fuzz.py, schemathesis.toml) needs to know of this API beyond
/openapi.json: how to log in, and the shape every error answer has (web/errors.py)."""

from typing import Any

import httpx
import schemathesis
from schemathesis import Case, Response

ACCOUNT = {"email": "fuzzer@example.com", "password": "the fuzzer's own pass phrase"}


def log_in(base_url: str) -> dict[str, str]:
    """The cookies of a new session of the fuzzer's account, made on first use."""
    signed_up = httpx.post(f"{base_url}/api/v1/users", json=ACCOUNT, timeout=10)
    assert signed_up.status_code == 201, signed_up.text  # also when an earlier call made it
    response = httpx.post(f"{base_url}/api/v1/session", json=ACCOUNT, timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.cookies)


@schemathesis.auth()
class Session:
    """Every case is sent logged in. A 401 (a case that logged the session out, or ended it)
    makes the fuzzer log in again before its next request."""

    def get(self, case: Case[Any], context: Any) -> dict[str, str]:
        return log_in(case.operation.schema.get_base_url().rstrip("/"))

    def set(self, case: Case[Any], cookies: dict[str, str], context: Any) -> None:
        case.cookies = {**(case.cookies or {}), **cookies}


@schemathesis.check
def error_shape(ctx: Any, response: Response, case: Case[Any]) -> None:
    """An error is JSON in the one shape, carries the answer's request id, and echoes nothing."""
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert isinstance(body.get("detail"), str), f"no `detail` string: {body!r}"
    request_id = response.headers.get("x-request-id", [""])[0]
    assert body.get("request_id") == request_id, f"`request_id` is not {request_id!r}: {body!r}"
    for error in body.get("errors", []):
        assert set(error) == {"loc", "msg", "type"}, f"an error says more than it should: {error}"
