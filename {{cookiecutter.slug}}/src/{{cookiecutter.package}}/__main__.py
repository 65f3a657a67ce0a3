"""`python -m {{ cookiecutter.package }} <process>`: the one entry point of every Procfile process type."""

import atexit
import os
import shutil
import sys
import tempfile
from importlib import import_module

PROCESS_TYPES = ("web", "worker", "clock", "release")


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PROCESS_TYPES:
        sys.exit(f"usage: python -m {__package__} <{'|'.join(PROCESS_TYPES)}>")
    # Metrics of several OS processes (web workers, prefork children) meet in files here; set
    # before anything imports prometheus_client. Fresh per start, so no stale samples add up.
    metrics_dir = tempfile.mkdtemp(prefix="metrics-")
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    import_module(f"{__package__}.{sys.argv[1]}").main()


if __name__ == "__main__":
    main()
