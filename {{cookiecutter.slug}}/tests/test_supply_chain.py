"""The supply chain tools read the hashed lock without the network: `make sbom` writes the
CycloneDX bill of materials of requirements.lock (CI keeps it with each image), and `make audit`
reads every pinned package from it (CI then asks the advisory database, which needs the network,
and fails on a known vulnerability)."""

import json
import re
import subprocess
from pathlib import Path

from packaging.markers import Marker

from .conftest import ROOT


def locked(lock: str = "requirements.lock") -> list[tuple[str, str, str]]:
    """(name, version, environment marker) of every pin in the lock. The lock is universal: a
    package may be pinned twice, at two versions for two Python versions."""
    text = (ROOT / lock).read_text()
    return [
        (name.lower(), version, marker.strip())
        for name, version, marker in re.findall(
            r"^([A-Za-z0-9_.-]+)==([^\s;]+)(?: ;([^\\]*))?", text, re.MULTILINE
        )
    ]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sbom_lists_exactly_what_production_installs(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = make("sbom", f"SBOM={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    name = re.search(r'^name = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert name
    assert bom["metadata"]["component"]["name"] == name[1]
    components = sorted((c["name"].lower(), c["version"]) for c in bom["components"])
    # Nothing left out, nothing from the dev tools.
    assert components == sorted((name, version) for name, version, _ in locked())
    for component in bom["components"]:
        assert component["purl"] == f"pkg:pypi/{component['name']}@{component['version']}"
        hashes = component["externalReferences"][0]["hashes"]
        assert hashes, component["name"]  # the lock's hashes travel with the bill


def test_audit_reads_every_locked_package_from_the_hashed_lock() -> None:
    # The command CI runs, as the Makefile spells it, in its dry-run form: everything but the
    # question to the advisory database.
    command = make("-n", "audit").stdout.strip()
    assert "--require-hashes" in command
    assert "requirements.lock" in command
    result = subprocess.run(
        [*command.split(), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every pin that applies to the Python and platform this runs on (the image's).
    here = [pin for pin in locked() if not pin[2] or Marker(pin[2]).evaluate()]
    assert f"would have audited {len(here)} packages" in result.stderr + result.stdout
