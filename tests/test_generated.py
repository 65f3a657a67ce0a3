"""Render the default project, install it from its locks as its README says, and run its own
lint and test suite against real PostgreSQL and Redis (TEST_DATABASE_URL / TEST_REDIS_URL)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import BIN, render


def run(args: list[str], cwd: Path, timeout: float) -> None:
    env = {
        **os.environ,
        "PATH": f"{cwd / '.venv' / 'bin'}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("generated"))
    # The README's install step, word for word: `make install` runs exactly these.
    run(["uv", "venv", "--python", "3.11", ".venv"], project, 120)
    run(["uv", "pip", "sync", "--python", ".venv", "requirements-dev.lock"], project, 600)
    run(["uv", "pip", "install", "--python", ".venv", "--no-deps", "-e", "."], project, 120)
    return project


def test_generated_project_is_lint_clean(installed: Path) -> None:
    run(["ruff", "check", "."], installed, 120)
    run(["ruff", "format", "--check", "."], installed, 120)
    run(["mypy"], installed, 300)


def test_generated_project_passes_its_own_suite(installed: Path) -> None:
    began = time.monotonic()
    run(["pytest", "-q", "-p", "no:cacheprovider"], installed, 900)
    print(f"generated suite: {time.monotonic() - began:.0f} s")
