"""Jobs across releases: the arguments of a task change shape, and during a rolling deploy the
old and the new shapes meet. The rule (README, "Jobs across releases"): a task accepts every
shape the previous release sends. A new parameter comes with a default; a parameter is removed
one release after nothing sends it; a new task is added one release before anything sends it.

SENT lists each shape a release of this service has sent, per task. Change a task's parameters
and this test says whether the previous release's messages would still run; add the new shape
here when you release it, and drop a shape once no release that sends it is running.
"""

import inspect
from typing import Any

from celery import Celery

import {{ cookiecutter.package }}.jobs.tasks  # noqa: F401 - registers the tasks with every app

# task name: the (args, kwargs) each release sends, oldest first.
SENT: dict[str, list[tuple[list[Any], dict[str, Any]]]] = {
    "notes.enrich": [([1], {})],  # web/api/notes.py, notes.sweep
    "clock.heartbeat": [([], {})],  # the clock's schedule (jobs/clock.py)
    "clock.prune": [([], {})],
    "notes.sweep": [([], {})],
    "dead_letters.sweep": [([], {})],
}


def registered() -> dict[str, Any]:
    app = Celery(set_as_current=False)
    app.finalize()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_accepts_every_shape_a_release_sends() -> None:
    tasks = registered()
    assert set(tasks) == set(SENT), "a task added or removed: record what each release sends"
    for name, shapes in SENT.items():
        signature = inspect.signature(tasks[name].run)
        for args, kwargs in shapes:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise AssertionError(f"{name}{signature} refuses {args} {kwargs}: {exc}") from exc
