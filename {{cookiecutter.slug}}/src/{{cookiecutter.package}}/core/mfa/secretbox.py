"""Encryption at rest for TOTP secrets: unlike a password, the server must read them back.

AES-256-GCM under a key derived (HKDF) from `MFA_ENCRYPTION_KEY`, or from `SECRET_KEY` when that
is unset. Each sealed value is bound to its owner (the associated data), so a row copied onto
another account does not open. Fallback keys open what they sealed; the caller seals it again
with the current key, so once every secret has been used the old key can go.
"""

import os
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class Unreadable(Exception):
    """No key opens it: the key it was sealed with is neither current nor a fallback."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = list(keys)  # the current key first

    @cached_property
    def _aeads(self) -> "list[AESGCM]":
        # Imported at the first use, not at start: cryptography adds 10 MB and 25 ms to every
        # web process, and only enrolments and logins with a second factor need it.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.hashes import SHA256
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        def derive(key: str) -> bytes:
            # A purpose of its own: derived from SECRET_KEY it is still not the signing key.
            hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"mfa-secretbox")
            return hkdf.derive(key.encode())

        return [AESGCM(derive(key)) for key in self._keys]

    def seal(self, plaintext: bytes, owner: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aeads[0].encrypt(nonce, plaintext, owner.encode())

    def open(self, sealed: bytes, owner: str) -> tuple[bytes, bool]:
        """The plaintext, and whether it was sealed with a fallback key (seal it again)."""
        from cryptography.exceptions import InvalidTag

        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        for index, aead in enumerate(self._aeads):
            try:
                return aead.decrypt(nonce, ciphertext, owner.encode()), index > 0
            except InvalidTag:
                continue
        raise Unreadable


def create_secretbox(settings: Settings) -> SecretBox:
    if settings.mfa_encryption_key is not None:
        keys = [settings.mfa_encryption_key, *settings.mfa_encryption_key_fallbacks]
    else:
        keys = [settings.secret_key, *settings.secret_key_fallbacks]
    return SecretBox([key.get_secret_value() for key in keys])
