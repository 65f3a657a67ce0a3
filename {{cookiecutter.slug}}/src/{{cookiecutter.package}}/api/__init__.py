"""The public API, versioned under /api/v1."""

from fastapi import APIRouter

from . import heartbeats, notes, session

router = APIRouter(prefix="/api/v1")
router.include_router(notes.router)
router.include_router(session.router)
router.include_router(heartbeats.router)
