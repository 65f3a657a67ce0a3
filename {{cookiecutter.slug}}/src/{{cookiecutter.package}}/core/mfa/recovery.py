"""Recovery codes: ten single-use codes, shown once, for when the authenticator is lost.

Each has 120 random bits, so a SHA-256 is enough to keep it (OWASP ASVS 5 V6.5.2 asks for a slow,
salted hash only below 112 bits). They are written in groups of four letters and digits; case,
spaces and dashes do not matter when one is typed back.
"""

import base64
import hashlib
import secrets

COUNT = 10
CHARACTERS = 24  # base32: 5 bits each


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(15)).decode().lower()  # 15 bytes: 24 characters
    return "-".join(raw[i : i + 4] for i in range(0, CHARACTERS, 4))


def new_codes() -> list[str]:
    return [new_code() for _ in range(COUNT)]


def normalise(code: str) -> str | None:
    """The code as generated, without its dashes; None if it cannot be one."""
    cleaned = "".join(code.split()).replace("-", "").lower()
    if len(cleaned) != CHARACTERS or not cleaned.isascii():
        return None
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return cleaned if all(c in alphabet for c in cleaned) else None


def digest(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()
