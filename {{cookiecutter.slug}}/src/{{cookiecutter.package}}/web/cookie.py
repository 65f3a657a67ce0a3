"""The session cookie: an opaque signed id, HttpOnly, SameSite=Lax, and over HTTPS `__Host-`.
A login waiting for its second factor has a cookie of the same kind under another name.

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
    base_name: str = "session"

    @property
    def name(self) -> str:
        return f"__Host-{self.base_name}" if self.secure else self.base_name

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
