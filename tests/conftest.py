"""Shared helpers for the template's tests: render with cookiecutter, find the tool binaries."""

import re
import subprocess
import sys
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
