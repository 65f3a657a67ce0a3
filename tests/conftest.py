"""Shared helpers for the template's tests: render with cookiecutter, find the tool binaries."""

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


# The groups of tests that share a fixture costly to build (pyproject.toml runs them with
# pytest-xdist's loadgroup, a group in one test process), in the order they are handed out:
# longest first, so that the run is not waiting on one of them at the end. The generated suite
# alone takes longer than the rest of its group and the labs; the many short tests fill in.
LONGEST_FIRST = ["generated-suite", "generated", "workshop-0", "workshop-1"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        name = group.args[0] if group and group.args else None
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each group, and the rest, in the order they were collected
