"""Factor II, dependencies: declared in pyproject.toml, pinned with hashes in the lock files."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def declared() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = project["project"]["dependencies"]
    return {
        "requirements.lock": runtime,
        "requirements-dev.lock": runtime + project["dependency-groups"]["dev"],
    }


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_lock_satisfies_pyproject(lock: str) -> None:
    pinned = pins(ROOT / lock)
    for spec in declared()[lock]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is declared but not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run `make lock`"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_pin_has_hashes_and_no_index_is_named(lock: str) -> None:
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    # One entry per pin (a package may be pinned twice, under different markers).
    assert len(entries) == sum(bool(PIN.match(line)) for line in text.splitlines()) > 10
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    assert not re.search(r"--(extra-)?index-url|--find-links|https?://", text)
