"""The `clock` process: Celery beat with redbeat's scheduler. It enqueues, never works.

redbeat keeps the schedule and a lock in Redis. Any number of clocks may run; the one holding the
lock schedules, the rest wait. The holder renews the lock every loop; SIGTERM releases it at
once; a clock that dies without releasing it is replaced once CLOCK_LOCK_TIMEOUT_SECONDS pass.
"""

from celery import Celery
from celery.apps.beat import Beat

from ..core.broker import create_celery
from ..core.logging import configure_logging
from ..core.settings import Settings, load_settings
from .worker import connect_logging

# redbeat crash-loops when the lock timeout is too close to the loop interval (redbeat issue
# 230); five loops per lock timeout leaves room for a slow Redis round trip.
LOOPS_PER_LOCK_TIMEOUT = 5


def configure_schedule(app: Celery, settings: Settings) -> None:
    app.conf.update(
        beat_schedule={
            "heartbeat": {"task": "clock.heartbeat", "schedule": settings.heartbeat_seconds},
            "prune": {"task": "clock.prune", "schedule": 3600.0},
            "sweep-unenriched-notes": {"task": "notes.sweep", "schedule": 300.0},
        },
        redbeat_redis_url=settings.redis_url.get_secret_value(),
        redbeat_redis_options={
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        },
        redbeat_lock_timeout=settings.clock_lock_timeout_seconds,
        beat_max_loop_interval=settings.clock_lock_timeout_seconds / LOOPS_PER_LOCK_TIMEOUT,
    )


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    connect_logging(settings)
    app = create_celery(settings)
    configure_schedule(app, settings)
    # SIGTERM: beat saves its state and closes the scheduler, which releases redbeat's lock.
    Beat(
        app=app, scheduler="redbeat.RedBeatScheduler", quiet=True, loglevel=settings.log_level
    ).run()
