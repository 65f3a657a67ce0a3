"""The template's own code (hooks, tests, bench) is ruff- and mypy-clean, like what it renders."""

import pytest

from .conftest import TEMPLATE, check_tool


@pytest.mark.parametrize(
    "command", [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]]
)
def test_template_code_is_lint_clean(command: list[str]) -> None:
    check_tool(command, TEMPLATE)
