"""Cross-site request forgery: an unsafe request that a browser sent from another site is
refused with 403, modelled on Go 1.25's `net/http.CrossOriginProtection`. No tokens.

Browsers say where a request comes from. `Sec-Fetch-Site` (every current browser) is trusted
first: `same-origin` or `none` (typed in, a bookmark) pass, anything else passes only from a
trusted origin. Without it, an `Origin` naming this host passes, as does a trusted one. The
trusted origins are CORS_ORIGINS, the list CORS allows (cors.py): one list for both rules. A
request with neither header did not come from a browser, where cross-site forgery happens
(curl, another service, a mobile app), and passes.
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import send_json_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CrossOriginProtection:
    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = frozenset(origin.encode() for origin in trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or self._allowed(scope):
            await self.app(scope, receive, send)
        else:
            await send_json_error(send, scope, 403, "cross-origin request refused")

    def _allowed(self, scope: Scope) -> bool:
        site = origin = host = None
        for name, value in scope["headers"]:
            if name == b"sec-fetch-site":
                site = value
            elif name == b"origin":
                origin = value
            elif name == b"host":
                host = value
        if site is not None:
            return site in (b"same-origin", b"none") or origin in self.trusted
        if origin is None:
            return True  # not a browser
        return urlsplit(origin.decode("latin-1")).netloc.encode("latin-1") == host or (
            origin in self.trusted
        )
