"""The public API, versioned under /api/v1."""

from fastapi import APIRouter

from . import heartbeats, mfa, notes, passkeys, recovery, session, sessions, users
from .routers import PREFIX

__all__ = ["PREFIX", "ROUTERS"]

# Matched in this order on every request: the most requested paths first.
ROUTERS: tuple[APIRouter, ...] = (
    session.router,
    notes.router,
    sessions.router,
    users.router,
    heartbeats.router,
    recovery.router,
    mfa.router,
    passkeys.router,
)
