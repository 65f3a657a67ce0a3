"""The app factory: builds the web application from settings, with no work at import time.

The lifespan opens the backing-service clients when a web process starts and closes them, within
a bounded time, when it stops. Routes receive them through the aliases in deps.py.
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from ..core.db import create_async_db_engine, session_factory
from ..core.flags import create_flags
from ..core.logging import AccessLog
from ..core.metrics import HttpMetrics
from ..core.mfa.pending import create_pending_logins
from ..core.mfa.secretbox import create_secretbox
from ..core.passkeys.challenges import create_challenges
from ..core.passwords import Hasher
from ..core.redis_client import create_redis
from ..core.sessions import create_session_store
from ..core.settings import Settings
from ..core.task_sender import TaskSender
from . import api, health
from .body_limit import BodyLimitMiddleware
from .cookie import SessionCookie
from .cors import CorsMiddleware
from .csrf import CrossOriginProtection
from .deadline import DeadlineMiddleware
from .docs import add_docs
from .errors import install_error_handlers
from .headers import SecurityHeadersMiddleware, security_headers
from .observe import ObserveMiddleware, metrics_endpoint
from .page import add_page
from .ratelimit import create_login_throttle, create_mail_throttle, create_rate_limiter

if TYPE_CHECKING:
    from ..core.tracing import Tracing  # imports OpenTelemetry: never at run time when off

log = structlog.get_logger(__name__)

# The answers given when the project was made: the OpenAPI title and description.
TITLE = {{ cookiecutter.project_name | jsonify }}
DESCRIPTION = {{ cookiecutter.description | jsonify }}


def create_app(settings: Settings, tracing: "Tracing | None" = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Nothing here connects: a process started during an outage comes up not-ready, not dead.
        engine = create_async_db_engine(settings)
        if tracing is not None:
            tracing.instrument_engine(engine.sync_engine)
        login_check = create_async_db_engine(settings, pooled=False)  # /readyz: see health.py
        redis = create_redis(settings)
        tasks = TaskSender(settings)
        hasher = Hasher(settings)
        flags = create_flags(settings, registry)
        yield {
            "settings": settings,
            "engine": engine,
            "login_check_engine": login_check,
            "sessionmaker": session_factory(engine),
            "redis": redis,
            "tasks": tasks,
            "rate_limiter": create_rate_limiter(settings, redis),
            "login_throttle": create_login_throttle(settings, redis),
            "mail_throttle": create_mail_throttle(settings, redis),
            "hasher": hasher,
            "flags": flags,
            "cookie": SessionCookie(
                settings.session_cookie_secure, settings.session_max_age_seconds
            ),
            "session_store": create_session_store(settings, redis),
            "pending_logins": create_pending_logins(settings, redis),
            "pending_cookie": SessionCookie(
                settings.session_cookie_secure, settings.mfa_pending_seconds, "login-pending"
            ),
            "secretbox": create_secretbox(settings),
            "passkey_challenges": create_challenges(settings, redis),
        }
        hasher.close()
        flags.close()
        # uvicorn gives the lifespan shutdown no deadline of its own: bound it here.
        try:
            async with asyncio.timeout(settings.db_timeout_seconds):
                await asyncio.gather(engine.dispose(), login_check.dispose(), redis.aclose())
        except TimeoutError:
            log.warning("closing connections timed out")
        tasks.close()

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs.py serves them, when on, under their own CSP
        redoc_url=None,
        # FastAPI's own telemetry stays off, all three parts, so it does not even look for
        # OpenTelemetry's providers per request: server_span.py makes the request's span
        # (its docstring says why); metrics are Prometheus's (core/metrics.py), log lines
        # structlog's.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.draining = False  # set by the server at SIGTERM, read by /readyz
    registry = CollectorRegistry()
    # One flat list of routes, matched in order, the most requested first. The routers' routes
    # are added as the app's own rather than by include_router, whose routes FastAPI matches
    # through layers of its own, twice per request: finding GET /api/v1/session took 40 µs
    # that way and takes 7 µs now (the whole read: about 390 µs). Their paths, tags and errors are
    # complete already (api/routers.py). One consequence: app.dependency_overrides does not
    # reach them; the tests run the real dependencies.
    app.router.routes.insert(0, health.livez_route())
    for router in (*api.ROUTERS, health.router):
        app.router.routes.extend(router.routes)
    app.add_api_route("/metrics", metrics_endpoint(registry), include_in_schema=False)
    hsts = settings.session_cookie_secure  # HTTPS only then: see headers.py
    own_headers = add_page(app, hsts)
    if settings.api_docs:
        own_headers |= add_docs(app, hsts)
    install_error_handlers(app)
    # Added last runs first: the cross-origin 403, the body limit's 413 and the deadline's 503 are
    # observed (logged, counted, given a request id) like any answer. One list of origins for
    # both cross-origin rules, so CORS never allows what the CSRF check refuses, or the reverse.
    app.add_middleware(CrossOriginProtection, trusted_origins=settings.cors_origins)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(DeadlineMiddleware, seconds=settings.request_timeout_seconds)
    if settings.cors_origins:  # off by default: then not even a layer
        app.add_middleware(
            CorsMiddleware,
            origins=settings.cors_origins,
            max_age_seconds=settings.cors_max_age_seconds,
        )
    app.add_middleware(
        ObserveMiddleware,
        metrics=HttpMetrics(registry),
        access_log=AccessLog(settings.log_level, sys.stdout.buffer),
    )
    if tracing is not None:
        # Around observe.py: its access line carries the span's ids (left in the request's
        # state), its request id goes on the span. See server_span.py.
        from .server_span import ServerSpanMiddleware  # imports OpenTelemetry: only when on

        app.add_middleware(ServerSpanMiddleware, provider=tracing.provider)
    # Outermost: every answer, including those the layers above make themselves, carries them.
    app.add_middleware(
        SecurityHeadersMiddleware, headers=security_headers(hsts), by_path=own_headers
    )
    return app
