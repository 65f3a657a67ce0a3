"""How every API router is made: under PREFIX, with the error answers of RESPONSES.

The routers' routes are added to the app as its own (app.py), so each route carries its full
path and its documented errors itself instead of getting them from `include_router`.
"""

from fastapi import APIRouter

from ..errors import RESPONSES

PREFIX = "/api/v1"


def api_router(path: str = "", *, tag: str) -> APIRouter:
    return APIRouter(prefix=PREFIX + path, tags=[tag], responses=RESPONSES)
