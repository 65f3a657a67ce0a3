"""Listening ports: a port a process cannot have stops it with one line naming the port and
the setting that chose it, rather than a traceback from deep inside a server library.

Factor VIII: several processes of one type run side by side on one host (`honcho start -c
worker=2`, systemd template units, two checkouts on a laptop), so a port that is taken is
usually a sibling, not a mistake. `web` gets a port of its own from whoever starts it (honcho
and foreman hand each process its own `PORT`); a worker takes the first free port of a small
range (jobs/worker.py). Only a port taken by something else is fatal.
"""

import errno
import sys
from typing import NoReturn

import structlog

EX_UNAVAILABLE = 69  # sysexits.h: something the process needs (here, its port) is unavailable

log = structlog.get_logger(__name__)


def in_use(error: OSError) -> bool:
    return error.errno == errno.EADDRINUSE


def port_unavailable(port: int | str, setting: str, error: OSError) -> NoReturn:
    """Log why the process cannot listen, as one JSON line, and exit EX_UNAVAILABLE."""
    reason = error.strerror or str(error)
    log.critical(
        f"cannot listen on port {port} ({setting}): {reason}",
        port=port,
        setting=setting,
    )
    sys.exit(EX_UNAVAILABLE)
