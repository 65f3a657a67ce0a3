"""Shared helpers for the template's tests: render with cookiecutter, find the tool binaries."""

import subprocess
import sys
from pathlib import Path
from typing import Any

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
