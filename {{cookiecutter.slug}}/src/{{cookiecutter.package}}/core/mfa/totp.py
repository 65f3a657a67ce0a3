"""Time-based one-time passwords (RFC 6238), as every authenticator app makes them: HMAC-SHA1
over the number of 30-second steps since 1970, cut to six digits.

A code is accepted for the step before and after its own (clocks drift); the caller stores the
step it matched and accepts only later ones, so a code, once used, is refused for the rest of its
window (factors.py).
"""

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1


def new_secret() -> bytes:
    return secrets.token_bytes(20)  # 160 bits, the size RFC 4226 recommends for SHA-1


def base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def otpauth_uri(secret: bytes, account: str, issuer: str) -> str:
    """What the QR code holds: apps read the account name, the issuer and the secret from it."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {"secret": base32(secret), "issuer": issuer, "digits": DIGITS, "period": STEP_SECONDS},
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def code_at(secret: bytes, step: int) -> str:
    mac = hmac.digest(secret, struct.pack(">Q", step), hashlib.sha1)
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: bytes, code: str, now: float | None = None) -> int | None:
    """The time step whose code `code` is, within the drift allowed; None if none is."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    here = current_step(now)
    found = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        # Every candidate compared, in constant time, whichever matches.
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found
