"""The response headers of OWASP ASVS 5 V3.4 (browser security mechanisms), on every answer.

One pure-ASGI layer appends a list built once at start-up, so a request costs one dict lookup and
one list copy. uvicorn then checks and writes each header it is handed, which costs more than the
layer: some 50,000 instructions of a 1.1 million session read, for these six (the template's
bench/LAYERS.md). It wraps everything else, so the answers the other middleware make themselves
(403, 413, 503, a 500) carry the headers too.

- `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`: a JSON API loads
  nothing and is framed by no one; an answer a browser is tricked into rendering runs nothing.
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
  `Cross-Origin-Resource-Policy: same-origin` (other sites cannot embed an answer; CORS requests,
  see cors.py, are not affected), `Cross-Origin-Opener-Policy: same-origin`.
- `Cache-Control: no-store` on every answer: nearly all of them depend on the session (the
  account, its notes, its sessions), and a rule that covers every route cannot be forgotten on
  the next one. Nothing here is worth a shared cache's copy.
- `Strict-Transport-Security` for a year, subdomains included, only when the session cookie is
  `Secure` (SESSION_COOKIE_SECURE): that is when the service is reached over HTTPS. Local
  development over plain http never gets it, so a browser does not pin localhost to HTTPS.
"""

from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = Sequence[tuple[bytes, bytes]]

API_CSP = b"default-src 'none'; frame-ancestors 'none'"
HSTS = b"max-age=31536000; includeSubDomains"


def security_headers(hsts: bool, csp: bytes = API_CSP) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", csp),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    ]
    if hsts:
        headers.append((b"strict-transport-security", HSTS))
    return headers


class SecurityHeadersMiddleware:
    def __init__(
        self, app: ASGIApp, headers: Headers, by_path: Mapping[str, Headers] | None = None
    ) -> None:
        self.app = app
        self.headers = tuple(headers)
        # A page with needs of its own (the API docs, see docs.py) gets its own list instead.
        self.by_path = {path: tuple(own) for path, own in (by_path or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.by_path.get(scope["path"], self.headers) if self.by_path else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
