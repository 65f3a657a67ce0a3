"""Every choice of every option renders a project whose Python is the default's, byte for byte,
and which is lint-clean; options differ only in whole files (k8s/, CI config) that
tests/test_deploy.py validates. So the default's test suite (tests/test_generated.py) speaks for
every variant."""

import filecmp
import itertools
from pathlib import Path

import pytest

from .conftest import check_tool, render

VARIANTS = list(itertools.product(["yes", "no"], ["github", "gitlab", "none"]))
SHARED = ["src", "tests", "dev", "pyproject.toml", "requirements.lock", "requirements-dev.lock",
          "Procfile", "Dockerfile", "docker-compose.yml"]  # fmt: skip


def same_tree(a: Path, b: Path) -> bool:
    if a.is_file():
        return filecmp.cmp(a, b, shallow=False)
    compared = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if compared.left_only or compared.right_only or compared.diff_files or compared.funny_files:
        return False
    return all(same_tree(a / d, b / d) for d in compared.common_dirs)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("default"))


@pytest.mark.parametrize(("kubernetes", "ci"), VARIANTS)
def test_variant_shares_the_default_code_and_is_lint_clean(
    tmp_path: Path, default: Path, kubernetes: str, ci: str
) -> None:
    project = render(tmp_path, kubernetes=kubernetes, ci=ci)
    for name in SHARED:
        assert same_tree(default / name, project / name), f"{name} differs in {kubernetes}/{ci}"
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        check_tool(command, project)
