"""The interactive API docs (Swagger UI at /docs): off unless API_DOCS=on, and then under a
Content-Security-Policy of their own.

Off by default because the page runs third-party code: Swagger UI's script and stylesheet come
from a CDN, and it boots from an inline script. Allowing that in the policy every answer carries
(headers.py) would weaken it for the whole API, for a page the API's clients never need; the
machine-readable description stays at /openapi.json for them, always. Turned on (a developer's
laptop, a staging service), /docs alone gets a policy that allows exactly that page: scripts
from the CDN plus the one inline script, named by its hash; styles from the CDN; data fetched
from this origin only. ReDoc is not served.
"""

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from .headers import Headers, security_headers

PATH = "/docs"
CDN = "https://cdn.jsdelivr.net"
FAVICON_HOST = "https://fastapi.tiangolo.com"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def page(title: str) -> tuple[bytes, bytes]:
    """The docs page and the policy it runs under."""
    # Relative, so the page finds the schema under whatever path prefix a proxy adds.
    body = bytes(get_swagger_ui_html(openapi_url="openapi.json", title=title).body)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(body)
    )
    csp = (
        f"default-src 'none'; script-src {CDN} {hashes}; "
        # Swagger UI styles its widgets inline; a style cannot run script.
        f"style-src {CDN} 'unsafe-inline'; img-src {FAVICON_HOST} data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return body, csp.encode()


def add_docs(app: FastAPI, hsts: bool) -> dict[str, Headers]:
    """Serve /docs; returns its own security headers for SecurityHeadersMiddleware."""
    body, csp = page(f"{app.title} - API docs")

    async def docs() -> HTMLResponse:
        return HTMLResponse(body)

    app.add_api_route(PATH, docs, include_in_schema=False)
    return {PATH: security_headers(hsts, csp)}
