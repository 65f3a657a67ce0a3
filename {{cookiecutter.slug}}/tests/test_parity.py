"""Factor X, dev/prod parity: development (docker-compose.yml, the Makefile's venv), CI and the
production image run the same versions of Python, PostgreSQL and Redis, so what passed on a
laptop and in CI is what runs in production."""

import re

from .conftest import ROOT

COMPOSE, GITHUB, GITLAB = "docker-compose.yml", ".github/workflows/ci.yml", ".gitlab-ci.yml"
SERVICES = (COMPOSE, GITHUB, GITLAB)

# Where each file names each version. A CI file the project was generated without is skipped.
WHERE = {
    "Python": [
        ("Dockerfile", r"^FROM python:(\d[\d.]*)-"),
        ("Makefile", r"--python(?:-version)? (\d\S*)"),
        (GITHUB, r'python-version: "(\S+)"'),
        (GITLAB, r"image: python:([\d.]+)"),
    ],
    # The tag, without the digest that pins it (the same tag is pinned alike everywhere).
    "PostgreSQL": [(name, r"(?:image|name): postgres:([^\s@]+)") for name in SERVICES],
    "Redis": [(name, r"(?:image|name): redis:([^\s@]+)") for name in SERVICES],
}


def test_development_ci_and_production_run_the_same_versions() -> None:
    for tool, places in WHERE.items():
        found = {
            name: sorted(set(re.findall(pattern, (ROOT / name).read_text(), re.M)))
            for name, pattern in places
            if (ROOT / name).exists()
        }
        assert found[places[0][0]], f"{tool}: no version found in {places[0][0]}"
        versions = {version for named in found.values() for version in named}
        assert len(versions) == 1, f"{tool} versions differ: {found}"
