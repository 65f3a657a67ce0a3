"""Sending tasks by name, as web does: what sends them is made at the first send, not at start.

All web asks of the broker is to publish a task. Making the sender imports kombu (and, with
tracing on, Celery): some 70 to 200 modules and up to a tenth of a second of CPU (the template's
bench/startup.py); a web process that paid that before it was ready would start that much later,
for a note it may not be sent for minutes. The first send pays it instead, once per process, in
the thread pool that sends run in.

With tracing off, kombu alone sends Celery's message (kombu_sender.py), for less than half the
memory of Celery's app. With tracing on, Celery's app sends it: core/tracing.py has imported
Celery already, and its instrumentation, which works through Celery's publish signals, makes the
publish span and puts the trace context (with its not-sampled flag) in the message.
"""

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from .settings import Settings
from .telemetry import tracing_enabled


class _Sender(Protocol):
    def send_task(
        self, name: str, args: Sequence[Any], headers: dict[str, Any] | None = None
    ) -> Any: ...

    def close(self) -> None: ...


def _make_sender(settings: Settings) -> _Sender:
    if tracing_enabled():
        from .broker import create_celery  # imports Celery: see the docstring

        celery: _Sender = create_celery(settings)
        return celery
    from .kombu_sender import KombuSender  # imports kombu: see the docstring

    return KombuSender(settings)


class TaskSender:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender: _Sender | None = None
        self._lock = threading.Lock()  # sends run in the thread pool: one sender, made once

    def send_task(
        self, name: str, args: Sequence[Any], headers: dict[str, Any] | None = None
    ) -> None:
        self._get().send_task(name, args=args, headers=headers)

    def _get(self) -> _Sender:
        with self._lock:
            if self._sender is None:
                self._sender = _make_sender(self._settings)
            return self._sender

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
