"""The public API, versioned under /api/v1."""

from fastapi import APIRouter

from . import heartbeats, mfa, notes, passkeys, recovery, session, sessions, users

PREFIX = "/api/v1"
# Included by the app straight under PREFIX: each level of include_router is matched again on
# every request, so the hot paths stay one level deep.
ROUTERS: tuple[APIRouter, ...] = (
    notes.router,
    session.router,
    sessions.router,
    users.router,
    heartbeats.router,
    recovery.router,
    mfa.router,
    passkeys.router,
)
