"""CORS for browser front ends on other origins: off unless CORS_ORIGINS lists them.

The listed origins are exact (`https://app.example.com`; settings.py refuses a wildcard and
writes each the way browsers send `Origin`), compared byte for byte. They may send the session
cookie (`Access-Control-Allow-Credentials: true`), and they are the same list the cross-site
check (csrf.py) trusts, so what one allows the other never refuses, and the reverse.

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a listed origin is
answered here, 204, cacheable by the browser for CORS_MAX_AGE_SECONDS. From any other origin it
goes on to the app like any OPTIONS request (405) and carries no `Access-Control-*` header, so
the browser refuses the real request. Other answers to a listed origin carry its name and
expose the headers a client needs (`X-Request-ID`, `Retry-After`); every answer says
`Vary: Origin`, since it depends on it.
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = b"GET, POST, PUT, PATCH, DELETE"
REQUEST_HEADERS = b"content-type, x-request-id"
EXPOSED = b"x-request-id, retry-after"
VARY = (b"vary", b"origin")


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str], max_age_seconds: int) -> None:
        self.app = app
        self.origins = frozenset(origin.encode() for origin in origins)
        self.preflight = [
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", METHODS),
            (b"access-control-allow-headers", REQUEST_HEADERS),
            (b"access-control-max-age", b"%d" % max_age_seconds),
            VARY,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = scope["method"] == "OPTIONS"
        if origin is None or origin not in self.origins:
            extra = [VARY]
        elif preflight:
            headers = [(b"access-control-allow-origin", origin), *self.preflight]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        else:
            extra = [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", EXPOSED),
                VARY,
            ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)
