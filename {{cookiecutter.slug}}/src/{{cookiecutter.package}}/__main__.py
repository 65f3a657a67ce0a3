"""`python -m {{ cookiecutter.package }} <process>`: the one entry point of every Procfile process type."""

import sys
from importlib import import_module

PROCESS_TYPES = ("web", "worker", "clock", "release")


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in PROCESS_TYPES:
        sys.exit(f"usage: python -m {__package__} <{'|'.join(PROCESS_TYPES)}>")
    import_module(f"{__package__}.{sys.argv[1]}").main()


if __name__ == "__main__":
    main()
