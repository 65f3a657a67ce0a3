"""Shared helpers for the template's tests: render with cookiecutter, find the tool binaries."""

import fcntl
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the template's venv: cookiecutter, uv, hadolint, ...


def render(output_dir: Path, **context: Any) -> Path:
    """Render the template without prompts; returns the generated project's directory."""
    return Path(
        cookiecutter(
            str(TEMPLATE), no_input=True, output_dir=str(output_dir), extra_context=context
        )
    )


def check_tool(command: list[str], cwd: Path) -> None:
    """Run one of the template venv's tools (ruff, mypy ...) in `cwd`; fail on a non-zero exit."""
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The test processes side by side (pytest-xdist, pyproject.toml): tests that share a fixture
# costly to build go to one process as a group, handed out longest first so that the run does
# not wait on one of them at the end; the many short tests fill in. (xdist's own xdist_group
# marks do nothing with pytest 9.2, whose node ids xdist can no longer rename: hence this.)
# - The generated suite, the longest test, has a render of its own from the start; another
#   process installs a second render (seconds: uv links the packages from its cache) for the rest
#   of test_generated.py. Two renders, also so that processes_in() sees none of the suite's.
# - The labs on two workshops, alternately: most of a lab's time is its tests waiting on
#   processes that the break keeps from answering. The other workshop tests on the first.
LONGEST_FIRST = ["generated-suite", "generated", "workshop-0", "workshop-1"]
LAB = re.compile(r"tests/test_labs\.py::test_lab_breaks\w*\[(\d+)-")


def group(nodeid: str) -> str:
    """The group a test runs in; a test in none is a group of its own."""
    if nodeid == "tests/test_generated.py::test_generated_project_passes_its_own_suite":
        return "generated-suite"
    if nodeid.startswith("tests/test_generated.py::"):
        return "generated"
    if lab := LAB.match(nodeid):
        return f"workshop-{(int(lab[1]) + 1) % 2}"
    if nodeid.startswith("tests/test_labs.py::"):
        return "workshop-0"
    return nodeid


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = group(item.nodeid)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each group, and the rest, in the order they were collected


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type hints
        def _split_scope(self, nodeid: str) -> str:
            return group(nodeid)

    return ByGroup(config, log)


# The generated suite has the machine to itself: its timing tests, and its processes' timeouts,
# failed with the labs and the throwaway servers running beside it (CI, issue 24). A
# readers-writer lock on files of this run: the suite waits for the tests in progress, and no
# other test starts until it is done (the turnstile lets it go before the tests asking after it).
ALONE = {"tests/test_generated.py::test_generated_project_passes_its_own_suite"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one test at a time already
        return (yield)
    folder = Path(tempfile.gettempdir()) / f"template-tests-{run}"
    folder.mkdir(exist_ok=True)
    alone = item.nodeid in ALONE
    with (folder / "turnstile").open("a") as turnstile, (folder / "machine").open("a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
