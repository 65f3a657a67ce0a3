"""The session cookie: an opaque signed id, HttpOnly, SameSite=Lax, and over HTTPS `__Host-`.

Browsers accept a `__Host-` cookie only if it is Secure, has Path=/ and no Domain, so no
sibling subdomain can set or overwrite it (OWASP ASVS 5, V3.3).
"""

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class SessionCookie:
    secure: bool
    max_age: int

    @property
    def name(self) -> str:
        return "__Host-session" if self.secure else "session"

    def read(self, request: Request) -> str | None:
        return request.cookies.get(self.name)

    def set(self, response: Response, value: str) -> None:
        response.set_cookie(
            self.name,
            value,
            max_age=self.max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path="/", secure=self.secure, httponly=True, samesite="lax"
        )
