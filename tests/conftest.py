"""Shared helpers for the template's tests: render with cookiecutter, find the tool binaries."""

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
