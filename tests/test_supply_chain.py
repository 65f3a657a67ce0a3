"""The generated project's supply chain, checked offline for every CI choice: zizmor finds
nothing in any workflow the template can emit; every action is pinned to a full commit SHA with
its version beside it; tokens get no more than read access and are not left on disk; every image
(the Dockerfile's base, CI's, compose's services) is pinned by digest; CI audits the hashed lock
and keeps the image's CycloneDX bill of materials; the update bot's configuration is valid and
its lock manager can re-run the locks' own commands. What needs the network (the advisory
database, the registries, the bot itself) runs in the generated CI, never here."""

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import BIN, render

CI_CHOICES = ("github", "gitlab", "none")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("supply")
    return {
        ci: render(out / ci, kubernetes="yes", ci=ci, project_name="Billing Service")
        for ci in CI_CHOICES
    }


def workflows(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.y*ml"))


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# --- GitHub Actions ----------------------------------------------------------------------------


def test_only_the_github_choice_emits_workflows(projects: dict[str, Path]) -> None:
    assert [ci for ci, project in projects.items() if workflows(project)] == ["github"]
    assert {p.name for p in workflows(projects["github"])} == {"ci.yml", "audit.yml"}


@pytest.mark.parametrize("ci", CI_CHOICES)
def test_zizmor_finds_nothing_in_any_workflow(projects: dict[str, Path], ci: str) -> None:
    project = projects[ci]
    if not workflows(project):
        assert not (project / ".github").exists()
        return
    # The strictest persona; --offline: no lookups of actions or advisories.
    result = run(
        BIN / "zizmor", "--offline", "--persona=auditor", project / ".github" / "workflows"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                 *workflows(project))  # fmt: skip
    assert schema.returncode == 0, schema.stdout + schema.stderr


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_actions_are_pinned_to_commits_and_tokens_kept_to_reading(
    projects: dict[str, Path],
) -> None:
    for path in workflows(projects["github"]):
        text = path.read_text()
        workflow = yaml.safe_load(text)
        uses = [step["uses"] for step in steps(workflow) if "uses" in step]
        assert uses, path.name
        for action in uses:
            assert PINNED_ACTION.match(action), f"{path.name}: {action} is not a commit SHA"
        for line in text.splitlines():
            if re.match(r"\s*-?\s*uses:", line):
                assert VERSION_COMMENT.search(line), f"{path.name}: no version comment: {line}"
        assert workflow["permissions"] == {}, f"{path.name}: no default token permissions"
        for name, job in workflow["jobs"].items():
            granted = job.get("permissions", {})
            assert set(granted.values()) <= {"read", "none"}, f"{path.name}: {name}: {granted}"
        for step in steps(workflow):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, path.name


def test_ci_audits_the_lock_and_keeps_the_image_bill_of_materials(
    projects: dict[str, Path],
) -> None:
    github = projects["github"] / ".github" / "workflows"
    audit = yaml.safe_load((github / "audit.yml").read_text())
    triggers = audit[True]  # YAML 1.1 reads the key `on` as true
    assert "schedule" in triggers, "advisories appear for code that has not changed"
    assert "make audit" in [step.get("run") for step in steps(audit)]
    image = yaml.safe_load((github / "ci.yml").read_text())["jobs"]["image"]
    runs = " ".join(str(step.get("run", "")) for step in image["steps"])
    assert "docker build" in runs
    assert "sbom" in runs
    (upload,) = [s for s in image["steps"] if s.get("uses", "").startswith("actions/upload-")]
    assert upload["with"]["path"] == "sbom.cdx.json"

    gitlab = yaml.safe_load((projects["gitlab"] / ".gitlab-ci.yml").read_text())
    assert "make audit" in gitlab["audit"]["script"]
    assert gitlab["sbom"]["artifacts"]["reports"]["cyclonedx"] == ["sbom.cdx.json"]
    assert not any("cache" in job for job in gitlab.values() if isinstance(job, dict))

    makefile = (projects["none"] / "Makefile").read_text()
    (audit_line,) = re.findall(r"^\t.*pip-audit.*$", makefile, re.MULTILINE)
    assert "--require-hashes" in audit_line  # the hashed lock, every pin, no resolution
    assert "requirements.lock" in audit_line


# --- images ------------------------------------------------------------------------------------


def images(project: Path) -> list[tuple[str, str]]:
    """(file, image) for every image a file of the project pulls."""
    found = []
    stages: set[str] = set()
    for line in (project / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            if match[1] not in stages:
                found.append(("Dockerfile", match[1]))
            if match[2]:
                stages.add(match[2])
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        # jaeger and the mail catcher are development tools that nothing in production runs;
        # their tags are pinned, and the update bot keeps them current.
        if "image" in service and "build" not in service and name not in ("jaeger", "mail"):
            found.append(("docker-compose.yml", service["image"]))
    for path in workflows(project):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            found += [(path.name, s["image"]) for s in job.get("services", {}).values()]
    gitlab_file = project / ".gitlab-ci.yml"
    if gitlab_file.exists():
        for job in yaml.safe_load(gitlab_file.read_text()).values():
            if isinstance(job, dict):
                if "image" in job:
                    found.append((".gitlab-ci.yml", job["image"]))
                found += [(".gitlab-ci.yml", s["name"]) for s in job.get("services", [])]
    return found


@pytest.mark.parametrize("ci", CI_CHOICES)
def test_every_image_is_pinned_by_digest_with_its_tag(projects: dict[str, Path], ci: str) -> None:
    pulled = images(projects[ci])
    assert ("Dockerfile", pulled[0][1]) == pulled[0]
    assert len([f for f, _ in pulled if f == "Dockerfile"]) == 1, "one base, pinned once"
    for where, image in pulled:
        assert DIGEST.search(image), f"{where}: {image} is not pinned by digest"
        assert re.match(r"^[\w./-]+:[\w.-]+@", image), f"{where}: {image} has no tag for people"


# --- the update bot ----------------------------------------------------------------------------


def option_names(node: Any) -> set[str]:
    """Every key of every object in a Renovate config, but inside values that are data."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            names.add(key)
            names |= option_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= option_names(item)
    return names


@pytest.mark.parametrize("ci", CI_CHOICES)
def test_update_bot_config_is_valid_and_covers_locks_actions_and_images(
    projects: dict[str, Path], ci: str
) -> None:
    project = projects[ci]
    path = project / "renovate.json"
    result = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.renovate", path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(path.read_text())
    # The vendored schema lets unknown keys through: a misspelt option would silently do
    # nothing. Every key must be an option (or manager) Renovate's schema defines.
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None
    assert spec.origin is not None
    schema = Path(spec.origin).parent / "builtin_schemas" / "vendor" / "renovate.json"
    known = set(json.loads(schema.read_text())["definitions"]) | {"$schema"}
    assert option_names(config) <= known, option_names(config) - known

    # The lock manager finds both locks...
    (pattern,) = config["pip-compile"]["managerFilePatterns"]
    regex = re.compile(pattern.strip("/"))
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert regex.search(lock), lock
        # ...and can re-run the command each names: Renovate's pip-compile manager re-runs the
        # header's `uv pip compile` and refuses an option it does not know, or one whose value
        # is not joined by `=`.
        header = (project / lock).read_text().splitlines()[1].removeprefix("#").strip()
        argv = shlex.split(header)
        assert argv[:3] == ["uv", "pip", "compile"], header
        for arg in argv[3:]:
            if arg.startswith("-"):
                option = arg.split("=", 1)[0]
                takes_value = {"--python-version", "--group", "--output-file", "--extra"}
                assert option in {"--universal", "--generate-hashes"} | takes_value, arg
                assert (option in takes_value) == ("=" in arg), arg
        assert f"--output-file={lock}" in argv
    # Grouped: few pull requests. And the images and actions keep their pins.
    assert len([rule for rule in config["packageRules"] if "groupName" in rule]) >= 3
    assert "docker:pinDigests" in config["extends"]
    assert any(preset.startswith("helpers:pinGitHubActionDigests") for preset in config["extends"])
