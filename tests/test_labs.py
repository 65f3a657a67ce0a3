"""The workshop (WORKSHOP.md in the generated project) works as written, for every lab: `make lab`
applies its patch, the broken code still passes `make lint` (a real team's break does), the tests
the lab names fail, each of them, with the text the lab quotes, and `make lab-reset` puts every
file back byte for byte. A lab whose break no longer breaks anything fails here.

Only each lab's named tests run against its break: that the unbroken project passes its whole
suite is test_generated.py's job. Every `labs/*.patch` is picked up: adding a lab is a patch, a
section in WORKSHOP.md and its test in FACTORS.md.
"""

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import TEMPLATE, render
from .test_generated import run, without_venv

PATCHES = sorted((TEMPLATE / "{{cookiecutter.slug}}" / "labs").glob("*.patch"))
# Not the default name: a patch or a lab that spells out the default package shows up here.
NAME = {"project_name": "Workshop Notes"}
# What a lab may leave behind without it being part of the project: caches, and the log file
# lab 11's break writes (WORKSHOP.md says to delete it).
NOT_THE_PROJECT = {".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
# A failure of one of these is the break not being valid code, not the factor being broken.
BROKEN_CODE = re.compile(r"\b(ImportError|ModuleNotFoundError|SyntaxError|NameError|TypeError)\b")


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(tmp_path_factory.mktemp("labs"), **NAME)
    began = time.monotonic()
    run(["make", "install"], project, 600, venv_on_path=False)
    # Warm the caches: mypy's, so that a lab re-checks only what it changed, and the bytecode.
    assert make(project, "lint", timeout=300).returncode == 0
    pytest = [str(project / ".venv" / "bin" / "pytest"), "-p", "no:cacheprovider", "-q"]
    subprocess.run([*pytest, "--collect-only"], cwd=project, env=environment(), check=True)
    print(f"workshop project installed in {time.monotonic() - began:.0f} s")
    return project


@pytest.fixture(scope="module")
def lab_script(workshop: Path) -> ModuleType:
    """The project's own labs/lab.py: the harness reads WORKSHOP.md through the learner's code."""
    spec = importlib.util.spec_from_file_location("lab", workshop / "labs" / "lab.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(project: Path) -> dict[str, str]:
    """Every file of the project and its hash, caches, `.lab` and `*.log` aside: a `.rej` or
    `.orig` left by a patch, or a file not put back, shows as a difference."""
    files = {}
    for folder, subfolders, names in os.walk(project):
        subfolders[:] = [name for name in subfolders if name not in NOT_THE_PROJECT]
        for name in names:
            path = Path(folder) / name
            if name != ".lab" and path.suffix != ".log":
                content = hashlib.sha256(path.read_bytes()).hexdigest()
                files[str(path.relative_to(project))] = content
    return files


def environment() -> dict[str, str]:
    # The project is a throwaway copy: let Python cache its bytecode there. Without the cache
    # (PYTHONDONTWRITEBYTECODE, as some CI machines set) every pytest run compiled its plugins
    # and their imports again: about 5 s a run here, most of what a quick lab costs.
    env = without_venv()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def make(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=project,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outcomes(report: Path, test: str) -> list[tuple[str, str]]:
    """(outcome, message) of each test case `test` names (one, or each of its parameters)."""
    file, name = test.split("::")
    classname = file.removesuffix(".py").replace("/", ".")
    found = []
    for case in ElementTree.parse(report).iter("testcase"):  # noqa: S314 - pytest's own report
        case_name = case.get("name", "")
        if case.get("classname") != classname:
            continue
        if case_name != name and not ("[" not in name and case_name.startswith(f"{name}[")):
            continue
        for outcome in ("failure", "error", "skipped"):
            if (element := case.find(outcome)) is not None:
                found.append((outcome, element.get("message", "")))
                break
        else:
            found.append(("passed", ""))
    return found


@pytest.mark.parametrize("patch", PATCHES, ids=[patch.stem for patch in PATCHES])
def test_lab_breaks_its_tests_as_workshop_says_and_resets(
    patch: Path, workshop: Path, lab_script: ModuleType, tmp_path: Path
) -> None:
    lab = lab_script.labs(workshop)[patch.name[:2]]
    before = snapshot(workshop)
    began = time.monotonic()

    applied = make(workshop, "lab", f"N={lab.number}")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"Lab {lab.number} applied" in applied.stdout
    assert snapshot(workshop) != before, "the patch changed nothing"
    try:
        lint = make(workshop, "lint", timeout=300)  # a realistic break passes ruff and mypy
        assert lint.returncode == 0, lint.stdout + lint.stderr

        report = tmp_path / "report.xml"
        options = ["-p", "no:cacheprovider", "-q", f"--junitxml={report}"]
        result = subprocess.run(
            [str(workshop / ".venv" / "bin" / "pytest"), *options, *lab.tests],
            cwd=workshop,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, output[-4000:]
        for test in lab.tests:
            cases = outcomes(report, test)
            assert cases, f"{test}: no such test ran\n{output[-4000:]}"
            for outcome, message in cases:
                assert outcome == "failure", f"{test}: {outcome}, not a failure\n{output[-4000:]}"
                assert not BROKEN_CODE.search(message), f"{test}: {message}"
        # What the lab says the failure shows, in pytest's explanation of it (its E lines).
        explained = "\n".join(line for line in output.splitlines() if line.startswith("E "))
        shown = [text in explained for text in lab.expect]
        assert all(shown) if lab.expect_all else any(shown), (
            f"lab {lab.number}: expected {lab.expect} in the failure\n{explained[-4000:]}"
        )
    finally:
        reset = make(workshop, "lab-reset")
        for log in workshop.glob("*.log"):  # lab 11's break writes one; WORKSHOP.md: delete it
            log.unlink()
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert f"Lab {lab.number} undone" in reset.stdout
    assert snapshot(workshop) == before
    print(f"lab {lab.number}: {time.monotonic() - began:.0f} s")


def test_every_patch_has_its_lab_and_every_lab_its_checkpoint(
    workshop: Path, lab_script: ModuleType
) -> None:
    labs = lab_script.labs(workshop)  # raises if a section has no patch, or two
    assert sorted(labs) == sorted(patch.name[:2] for patch in PATCHES)
    assert sorted(labs) == [f"{n:02}" for n in range(1, len(labs) + 1)], "numbered without gaps"
    checkpoint = {test for tests in lab_script.factors(workshop).values() for test in tests}
    for lab in labs.values():
        assert lab.expect, f"lab {lab.number}: says nothing of what the failure shows"
        for test in lab.tests:
            assert test.split("[")[0] in checkpoint, f"lab {lab.number}: {test} not in FACTORS.md"


def test_one_lab_at_a_time_and_the_checkpoint_names_the_broken_factor(workshop: Path) -> None:
    listed = make(workshop, "lab")
    assert listed.returncode == 0
    assert "02  II. Dependencies" in listed.stdout
    assert make(workshop, "lab", "N=99").returncode != 0
    before = snapshot(workshop)
    assert make(workshop, "lab", "N=02").returncode == 0
    try:
        again = make(workshop, "lab", "N=03")
        assert again.returncode != 0
        refusal = [line for line in again.stdout.splitlines() if not line.startswith(".venv")]
        assert refusal == ["lab 02 (II. Dependencies) is applied: `make lab-reset` first"]
        broken = make(workshop, "checkpoint", "F=I II")
        assert broken.returncode != 0, broken.stdout
        assert "  pass  I. Codebase" in broken.stdout
        assert "  FAIL  II. Dependencies" in broken.stdout
        assert "failed: tests/test_locks.py::test_lock_satisfies_pyproject" in broken.stdout
    finally:
        assert make(workshop, "lab-reset").returncode == 0
    assert snapshot(workshop) == before
    assert "no lab is applied" in make(workshop, "lab-reset").stdout
    green = make(workshop, "checkpoint", "F=I II")
    assert green.returncode == 0, green.stdout
    assert "2 of 2 pass." in green.stdout


def test_a_lab_repaired_by_hand_resets_cleanly(workshop: Path) -> None:
    before = snapshot(workshop)
    dockerfile = workshop / "Dockerfile"
    pinned = dockerfile.read_text()
    assert make(workshop, "lab", "N=10").returncode == 0
    assert dockerfile.read_text() != pinned
    dockerfile.write_text(pinned)  # the repair: the base image as it was, by its digest
    reset = make(workshop, "lab-reset")
    assert reset.returncode == 0
    assert "repaired by hand already" in reset.stdout
    assert not (workshop / ".lab").exists()
    assert snapshot(workshop) == before


def test_labs_apply_inside_another_repository(tmp_path: Path) -> None:
    """A project rendered inside someone's git checkout: the patch's paths are the project's own,
    not the checkout's (git apply would otherwise skip every file, and say nothing)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    project = render(tmp_path / "work")
    result = subprocess.run(
        [sys.executable, "labs/lab.py", "apply", "11"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    logging = next((project / "src").iterdir()) / "core" / "logging.py"
    assert 'FileHandler("app.log")' in logging.read_text()
