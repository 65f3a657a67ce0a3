"""Request ids: every response carries X-Request-ID, and every log line of the request carries
`request_id` (observe.py puts it there).

A well-formed incoming id (from a load balancer or a calling service) is kept, so one id follows
a request across services; anything else is replaced rather than trusted into the logs.
"""

import random
import re

from starlette.types import Scope

HEADER = b"x-request-id"
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:-]{8,128}")


def request_id(scope: Scope) -> str:
    """The incoming id if it is well formed, else a new one."""
    for name, value in scope["headers"]:
        if name == HEADER and _WELL_FORMED.fullmatch(value):
            return str(value.decode())
    return new_request_id()


def new_request_id() -> str:
    # Random enough to tell requests apart, and no system call per request: not a secret.
    return f"{random.getrandbits(128):032x}"
