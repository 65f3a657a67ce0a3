"""The factor map (FACTORS.md in the generated project) names files and tests that exist."""

import re
from pathlib import Path

import pytest

from .conftest import render

FACTORS = ["I. ", "II. ", "III. ", "IV. ", "V. ", "VI. ", "VII. ", "VIII. ", "IX. ", "X. ",
           "XI. ", "XII. ", "Health checks", "Graceful shutdown", "Observability",
           "Retries and dead letters", "Exactly-once scheduling", "Rate limiting",
           "Security: accounts", "Security: hostile input"]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("factors"))


def rows(project: Path) -> list[list[str]]:
    lines = (project / "FACTORS.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| factor")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table]


def test_every_factor_has_a_row(project: Path) -> None:
    names = [row[0] for row in rows(project)]
    assert len(names) == len(FACTORS)
    for name, expected in zip(names, FACTORS, strict=True):
        assert name.startswith(expected)


def test_named_files_and_tests_exist(project: Path) -> None:
    package = next((project / "src").iterdir()).name
    for factor, where, proven_by, _ in rows(project):
        for path in re.findall(r"`([^`\s]+)`", where):
            path = path.replace(f"{package}/", f"src/{package}/", 1)
            assert (project / path).exists(), f"{factor}: {path} does not exist"
        tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", proven_by)
        assert tests, f"{factor}: no test named"
        for file, name in tests:
            source = (project / file).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{factor}: {file}::{name} missing"
