"""`python -m {{ cookiecutter.package }} <process> [args]`: the entry point of every process type."""

import gc
import logging
import os
import sys
import tempfile
from importlib import import_module

# Before anything imports structlog (core/settings.py does), in every process: structlog imports
# rich whenever it is installed, as the dev tools install it, for console tracebacks that no
# process here prints (every line is JSON). That was about 50 ms of each start in the tests. A
# None in sys.modules makes the import fail, which structlog expects and handles.
sys.modules.setdefault("rich", None)  # type: ignore[arg-type]

from .core.settings import load_settings  # noqa: E402
from .core.telemetry import keep_unused_sdk_out  # noqa: E402

# Before anything imports redis, in every process: spawned web children run this module first.
keep_unused_sdk_out()

# Each process type's module: what only web needs lives in web/, what only the worker and the
# clock need in jobs/, one-off admin processes in admin/, and what they all share in core/.
PROCESS_TYPES = {
    "web": "web.server",
    "worker": "jobs.worker",
    "clock": "jobs.clock",
    "release": "admin.release",
    "users": "admin.users",  # takes arguments: `users create EMAIL`, `users list`, ...
    "jobs": "admin.jobs",  # `jobs dead list|redrive|purge`, `jobs queues`
}


def run(process: str) -> int | None:
    """Import the process type's module and run it: its exit status (None: 0)."""
    # The import makes most of what the process keeps for its whole life, some 100,000 objects,
    # and next to no garbage. The collector would scan them every 700 new objects as they are
    # made, and again in every full collection after: paused during the import, then told to
    # leave them be (frozen), it does neither. Measured: 0.04 to 0.09 s less CPU per start.
    gc.disable()
    try:
        module = import_module(process)
    finally:
        gc.freeze()
        gc.enable()
    return module.main()  # type: ignore[no-any-return]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in PROCESS_TYPES:
        sys.exit(f"usage: python -m {__package__} <{'|'.join(PROCESS_TYPES)}> [args]")
    process = f"{__package__}.{PROCESS_TYPES[sys.argv[1]]}"
    # Config first, before a process type imports its framework (a second or more on a busy
    # machine): a bad variable stops any process at once. The process reads it again, cheaply.
    load_settings()
    if sys.argv[1] == "worker":
        # The prefork children's metrics reach the main process's /metrics through files here;
        # set before anything imports prometheus_client (see core/metrics.py).
        with tempfile.TemporaryDirectory(prefix="metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            status = run(process)
    else:
        status = run(process)
    # A clean finish, with everything closed: skip the interpreter's teardown of every imported
    # module (about 0.3 s here), which would only delay the exit that a deploy is waiting for.
    # Hence a process type's main() returns its exit status (None: 0) instead of passing it to
    # sys.exit(), which would take the long way out.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status or 0)


if __name__ == "__main__":
    main()
