"""Sending tasks by name, as web does: the Celery app is made at the first send, not at start.

All web asks of Celery is `send_task`. Making the app imports Celery and kombu, some 200 modules
and about a tenth of a second of CPU (the template's bench/startup.py): a web process that paid
that before it was ready would start that much later, for a note it may not be sent for minutes.
The first send pays it instead, once per process, in the thread pool that sends run in.
"""

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from celery import Celery  # at run time only in _app(), at the first send


class TaskSender:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._celery: Celery | None = None
        self._lock = threading.Lock()  # sends run in the thread pool: one app, made once

    def send_task(
        self, name: str, args: Sequence[Any], headers: dict[str, Any] | None = None
    ) -> None:
        self._app().send_task(name, args=args, headers=headers)

    def _app(self) -> "Celery":
        with self._lock:
            if self._celery is None:
                from .broker import create_celery  # imports Celery: see the docstring

                self._celery = create_celery(self._settings)
            return self._celery

    def close(self) -> None:
        if self._celery is not None:
            self._celery.close()
