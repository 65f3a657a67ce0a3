"""The `clock` process: Celery beat with redbeat's scheduler. It enqueues, never works.

redbeat keeps the schedule and a lock in Redis. Any number of clocks may run; the one holding the
lock schedules, the rest wait. The holder renews the lock every loop; SIGTERM releases it at
once; a clock that dies without releasing it is replaced once CLOCK_LOCK_TIMEOUT_SECONDS pass.
"""

from types import FrameType
from typing import Any

import structlog
from celery import Celery, beat, platforms, signals
from celery.apps.beat import Beat
from redbeat import RedBeatScheduler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.broker import create_celery
from ..core.logging import configure_logging
from ..core.redis_client import redis_options
from ..core.settings import Settings, load_settings
from ..core.telemetry import start_tracing, tracing_enabled

log = structlog.get_logger(__name__)

# redbeat crash-loops when the lock timeout is too close to the loop interval (redbeat issue
# 230); five loops per lock timeout leaves room for a slow Redis round trip.
LOOPS_PER_LOCK_TIMEOUT = 5


def configure_schedule(app: Celery, settings: Settings) -> None:
    # With REDIS_URL_FILE, redbeat's client reads the password again at each new connection.
    url, options = redis_options(settings)
    app.conf.update(
        beat_schedule={
            "heartbeat": {"task": "clock.heartbeat", "schedule": settings.heartbeat_seconds},
            "prune": {"task": "clock.prune", "schedule": 3600.0},
            "sweep-unenriched-notes": {"task": "notes.sweep", "schedule": 300.0},
            "sweep-outbox": {"task": "mail.sweep", "schedule": settings.outbox_sweep_seconds},
            "sweep-redrives": {"task": "dead_letters.sweep", "schedule": 300.0},
        },
        redbeat_redis_url=url,
        redbeat_redis_options=options,
        # Its schedule and lock under this service's prefix: two services on one Redis each
        # keep their own clock running.
        redbeat_key_prefix=f"{settings.redis_key_prefix}:redbeat",
        redbeat_lock_timeout=settings.clock_lock_timeout_seconds,
        beat_max_loop_interval=settings.clock_lock_timeout_seconds / LOOPS_PER_LOCK_TIMEOUT,
    )


def _log_sent(sender: str, headers: dict[str, Any], **_: Any) -> None:
    # Connected after tracing is set up, so written inside the publish span: with tracing on,
    # the clock's line for each enqueue carries the trace id the task's lines carry.
    log.info("task sent", task_name=sender, task_id=headers.get("id"))


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler, whose loop outlives a Redis that is briefly out of reach.

    Each tick renews the lock and reads what is due, both in Redis. redbeat lets a connection
    error end beat (exit 1); here that tick is skipped and the next loop tries again. Scheduling
    only ever follows a renewal that worked: out of reach for longer than the lock timeout, a
    standby takes the lock, this clock's next renewal is refused, and it exits.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis out of reach: tick skipped", error=str(exc))
            return float(self.max_interval)


class Clock(Beat):  # type: ignore[misc]
    """Celery's beat, whose SIGTERM never lands inside a tick.

    Celery's own handler closes the scheduler (its lock and broker connection) and raises
    SystemExit wherever the signal lands. Inside a tick, that pulls the connection from under a
    publish, which is then lost; in one test run the loop even went on, and its next tick failed
    on the released lock (exit 1). This handler only asks the loop to stop, and wakes it at once
    when it is asleep between ticks. Caught inside a tick, the loop stops after that tick and one
    more sleep (at most CLOCK_LOCK_TIMEOUT_SECONDS / 5).
    """

    def install_sync_handler(self, service: beat.Service) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            service.stop()  # the loop ends before its next tick, then closes the scheduler
            if frame is not None and frame.f_code is beat.Service.start.__code__:
                raise SystemExit  # asleep between ticks: nothing to interrupt

        platforms.signals.update(SIGTERM=stop, SIGINT=stop)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, trace_ids=tracing_enabled())
    # Celery sets up logging of its own unless someone answers this signal: ours stays. (The
    # worker does the same in jobs/worker.py, whose machinery the clock does not import.)
    signals.setup_logging.connect(
        lambda **_: configure_logging(settings.log_level, trace_ids=tracing_enabled()), weak=False
    )
    # Each enqueue starts a trace of its own. redbeat's Redis calls are not traced: its lock
    # renewals and schedule reads, every loop, would each be a trace of their own as well.
    tracing = start_tracing("clock", redis=False)
    signals.before_task_publish.connect(_log_sent, weak=False)
    app = create_celery(settings)
    configure_schedule(app, settings)
    # SIGTERM: the loop stops, then closes the scheduler, which releases redbeat's lock.
    try:
        Clock(app=app, scheduler=Scheduler, quiet=True, loglevel=settings.log_level).run()
    finally:
        if tracing is not None:
            tracing.shutdown()
