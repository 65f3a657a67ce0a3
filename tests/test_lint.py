"""The template's own code (hooks, tests, bench) is ruff- and mypy-clean, like what it renders."""

import subprocess

import pytest

from .conftest import BIN, TEMPLATE


@pytest.mark.parametrize(
    "command", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]]
)
def test_template_code_is_lint_clean(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
