"""Every error answer has one shape, whoever raises it:

    {"detail": "<one human-readable sentence>", "request_id": "<the X-Request-ID>"}

and a 422 adds `"errors": [{"loc": [...], "msg": "...", "type": "..."}]`, one per bad field.
FastAPI's validation errors, HTTPException (routing's 404 and 405 included), the 503 of a
backing service that is down, and the answers of the pure-ASGI middleware (413, the deadline's
503, a 500) all go through here. `errors` never carries what the client sent (pydantic's
`input`) nor the constraint's context (`ctx`): a rejected password is never echoed back.

A backing service that is down or too slow is a 503, never a 500: the request fails fast (every
client has a timeout from config) and the client is told to retry; nothing is retried here, so an
outage does not pile up waiting requests. So is a database schema behind this release (a column
or table its migration adds, read before `release` ran: core/schema.py): it ends by itself.
"""

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import orjson
import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope, Send

from ..core.schema import schema_behind

log = structlog.get_logger(__name__)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: `body`, `query`, `path` ... then the field")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. `string_too_long`")


class ErrorBody(BaseModel):
    detail: str
    request_id: str = Field(description="the X-Request-ID of the answer: quote it to support")


class ValidationErrorBody(ErrorBody):
    errors: list[FieldError]


# Declared on every API operation, so /openapi.json says what an error looks like and a client
# (or the fuzzer in tests/test_fuzz.py) can check every answer against it.
RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "invalid request: each bad field named"},
    "4XX": {"model": ErrorBody, "description": "client error"},
    503: {"model": ErrorBody, "description": "a backing service is unavailable: retry"},
}

UNAVAILABLE: dict[type[Exception], str] = {
    sqlalchemy.exc.OperationalError: "postgres",
    sqlalchemy.exc.InterfaceError: "postgres",
    sqlalchemy.exc.TimeoutError: "postgres",  # no pooled connection within the timeout
    redis.exceptions.ConnectionError: "redis",
    redis.exceptions.TimeoutError: "redis",
}


def error_body(request_id: str, detail: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    body: dict[str, Any] = {"detail": detail, "request_id": request_id}
    if errors is not None:
        body["errors"] = errors
    return orjson.dumps(body)


def _request_id(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))  # set by observe.py for all


def json_error(
    scope: Scope,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    return Response(
        error_body(_request_id(scope), detail, errors),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


async def send_json_error(
    send: Send,
    scope: Scope,
    status: int,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer with the error shape straight from a pure-ASGI middleware."""
    body = error_body(_request_id(scope), detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _printable(text: object) -> str:
    # A location names the client's own keys: one holding a lone surrogate cannot be encoded.
    return str(text).encode("utf-8", "replace").decode()


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """`loc`, `msg` and `type` of each error: never `input` or `ctx`, which hold client data."""
    return [
        {
            "loc": [part if isinstance(part, int) else _printable(part) for part in error["loc"]],
            "msg": _printable(error["msg"]),
            "type": str(error["type"]),
        }
        for error in exc.errors()
    ]


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
    )
    return json_error(request.scope, 422, detail or "invalid request", errors=errors)


def _allowed_methods(request: Request) -> str | None:
    """Every method /openapi.json lists for the request's path; None for an undocumented path.

    Starlette's 405 names the methods of the first route on the path only, and FastAPI makes
    one route per method: `Allow` would leave out the others the path has.
    """
    path = request.scope["path"]
    for template, operations in request.app.openapi()["paths"].items():
        parts = re.split(r"(\{[^}/]+\})", template)  # `{note_id}` matches one path segment
        if re.fullmatch("".join("[^/]+" if p[:1] == "{" else re.escape(p) for p in parts), path):
            return ", ".join(sorted(method.upper() for method in operations))
    return None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    headers = exc.headers
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers = {**(headers or {}), "Allow": allowed}
    return json_error(request.scope, exc.status_code, str(exc.detail), headers)


async def _unavailable(dependency: str, request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable", dependency=dependency, error=type(exc).__name__)
    return json_error(
        request.scope, 503, f"{dependency} unavailable, try again later", {"Retry-After": "1"}
    )


async def _programming_error(request: Request, exc: Exception) -> Response:
    if not schema_behind(exc):
        raise exc  # a bug: the 500 it is
    log.warning("database schema behind this release", error=type(exc.__cause__).__name__)
    detail = "database schema not migrated yet, try again later"
    return json_error(request.scope, 503, detail, {"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    for exc_type, dependency in UNAVAILABLE.items():
        app.add_exception_handler(exc_type, partial(_unavailable, dependency))
    app.add_exception_handler(sqlalchemy.exc.ProgrammingError, _programming_error)
