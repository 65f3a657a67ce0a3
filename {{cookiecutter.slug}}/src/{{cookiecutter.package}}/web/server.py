"""The `web` process: uvicorn serving the app, with a drain that platforms can rely on.

At SIGTERM (or SIGINT) uvicorn stops accepting, lets in-flight requests finish within
SHUTDOWN_GRACE_SECONDS, runs the lifespan shutdown, and this process exits 0. Two changes to
uvicorn's Server make that true: readiness turns 503 the moment the signal lands, and the signal
is not re-raised after a clean drain (uvicorn does that, which would end the process with 143).

With WEB_CONCURRENCY > 1 a small supervisor here runs that many such servers on one socket.
"""

import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import tempfile
from types import FrameType
from typing import TYPE_CHECKING

import structlog
import uvicorn
from fastapi import FastAPI

from ..core.logging import configure_logging
from ..core.ports import port_unavailable
from ..core.settings import Settings, load_settings
from ..core.telemetry import start_tracing, tracing_enabled
from .app import create_app
from .headers import security_headers
from .protocol import http_protocol

if TYPE_CHECKING:
    from ..core.tracing import Tracing  # imports OpenTelemetry: never at run time when off

log = structlog.get_logger(__name__)


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets is not None and self.started:
            # uvicorn says where it serves only for sockets it bound itself (see listen()).
            self._log_started_message(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): it records the signal to re-raise it once shut down.
        self.app.state.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def build_server(settings: Settings, tracing: "Tracing | None" = None) -> Server:
    app = create_app(settings, tracing)
    config = uvicorn.Config(
        app,
        host="0.0.0.0",
        port=settings.port,
        loop="uvloop",
        http=http_protocol(
            settings.max_request_head_bytes, security_headers(settings.session_cookie_secure)
        ),
        lifespan="on",
        log_config=None,  # keep the JSON logging set up in core/logging.py
        access_log=False,  # observe.py writes one line per request instead
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        server_header=False,
        proxy_headers=True,  # the client address from X-Forwarded-For, from trusted proxies only
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    return Server(config, app)


def listen(settings: Settings) -> socket.socket:
    """The web port, bound here rather than inside uvicorn: a taken port is then one clear line
    and exit status, not uvicorn's error plus a traceback (or none at all in a child)."""
    try:
        return socket.create_server(("0.0.0.0", settings.port), backlog=2048)
    except OSError as exc:
        port_unavailable(settings.port, "PORT", exc)


def serve(settings: Settings, sockets: list[socket.socket]) -> None:
    # In the process that serves: a spawned child sets up its own provider, after it started.
    tracing = start_tracing("web")
    server = build_server(settings, tracing)
    # Everything imported and built so far lives as long as the process: out of the cyclic
    # GC's reach, full collections under load stop rescanning it (p99 of a session read: 98 ms
    # to 17 ms in the template's bench/).
    gc.freeze()
    # With 32 requests in flight, the default threshold (700) ran a young collection every ten
    # session reads and an older one every hundred, each walking what those requests hold.
    # Ten times the threshold ran none in 5 s of the same load: session read 9% less CPU, p99
    # 16 -> 10 ms. The price: a garbage cycle waits longer to be freed.
    gc.set_threshold(7000, 10, 10)
    try:
        server.run(sockets=sockets)
    finally:
        if tracing is not None:
            tracing.shutdown()  # the spans of the requests drained at SIGTERM, too


def _serve_child(sock: socket.socket) -> None:
    settings = load_settings()
    configure_logging(settings.log_level, trace_ids=tracing_enabled())
    serve(settings, [sock])


def _supervise(settings: Settings, sock: socket.socket) -> int:
    """Run WEB_CONCURRENCY servers on one socket; forward SIGTERM/SIGINT; exit 0 if all drained."""
    # Each child writes its metrics to files here, and any child's /metrics adds them all up.
    # Spawned children import prometheus_client afresh, with this set (see metrics.py).
    metrics_dir = tempfile.TemporaryDirectory(prefix="metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_serve_child, args=(sock,), name=f"web-{n}")
        for n in range(settings.web_concurrency)
    ]
    for child in children:
        child.start()

    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return  # once: a second SIGTERM would kill a child that is already exiting
        stopping = True
        sock.close()  # our copy of the listener: once the children close theirs, connects fail
        for child in children:
            if child.exitcode is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("supervising web processes", pids=[c.pid for c in children])
    # Any child ending ends the group: the platform restarts the whole process, not a part.
    multiprocessing.connection.wait([c.sentinel for c in children])
    stop(signal.SIGTERM, None)
    for child in children:
        child.join(settings.shutdown_grace_seconds + settings.db_timeout_seconds + 5)
        if child.exitcode is None:
            child.kill()
    codes = [c.exitcode for c in children]
    metrics_dir.cleanup()
    log.info("web processes stopped", exit_codes=codes)
    # -SIGTERM: the signal reached a child before uvicorn took it over (still starting) or after
    # it gave it back (already drained). Either way nothing was cut off.
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, trace_ids=tracing_enabled())
    sock = listen(settings)
    if settings.web_concurrency > 1:
        return _supervise(settings, sock)
    serve(settings, [sock])
    return 0
