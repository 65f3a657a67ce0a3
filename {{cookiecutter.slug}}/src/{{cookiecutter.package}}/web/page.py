"""The account page at `/`: the thinnest real client of this API, and the one the browser tests
drive. Sign up, log in (password, then a code or a passkey when asked; or a passkey alone), add
passkeys, see and end sessions.

Three static files (static/), read once at start-up and served from memory: no template engine,
no build step, no third-party code. Same origin as the API, so the session cookie and the
cross-site check (csrf.py) work exactly as for any browser client.

The page gets a policy of its own (headers.py's `by_path`, one dict lookup a request): scripts
and styles from this origin only, none inline, and Trusted Types required, so the script cannot
hand a string to an HTML sink (it writes text only). Everything else keeps the API's
`default-src 'none'`; the script and stylesheet need nothing more, since a policy applies to
documents, not to the files they load.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

from .headers import Headers, security_headers

STATIC = Path(__file__).parent / "static"
PATH = "/"
FILES = {
    PATH: ("index.html", "text/html; charset=utf-8"),
    "/account.js": ("account.js", "text/javascript; charset=utf-8"),
    "/account.css": ("account.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)


def _serve(body: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(body, media_type=media_type)

    return serve


def add_page(app: FastAPI, hsts: bool) -> dict[str, Headers]:
    """Serve the page and its two files; returns the page's own security headers. Added after
    the API's routes, so matching an API path never tries these first."""
    for path, (name, media_type) in FILES.items():
        body = (STATIC / name).read_bytes()
        app.add_api_route(path, _serve(body, media_type), include_in_schema=False)
    return {PATH: security_headers(hsts, CSP.encode())}
