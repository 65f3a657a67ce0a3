"""The template renders every option cleanly, and refuses bad answers without leaving a mess."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, TEMPLATE, render

LEFTOVER = re.compile(r"\{\{\s*cookiecutter|\{%|cookiecutter\.")


def test_defaults_render_a_complete_project(tmp_path: Path) -> None:
    project = render(tmp_path)
    assert project.name == "acme-notes"
    for name in (
        "Procfile",
        "pyproject.toml",
        "requirements.lock",
        "requirements-dev.lock",
        ".env.example",
        "README.md",
        "src/acme_notes/web/app.py",
        "tests/conftest.py",
    ):
        assert (project / name).is_file(), name
    assert set((project / "Procfile").read_text().split()) >= {
        "web:",
        "worker:",
        "clock:",
        "release:",
    }


@pytest.mark.parametrize(
    "context",
    [{}, {"kubernetes": "no", "ci": "gitlab"}, {"kubernetes": "yes", "ci": "none"}],
)
def test_no_template_syntax_is_left_in_any_file(tmp_path: Path, context: dict[str, str]) -> None:
    project = render(tmp_path, **context)
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not LEFTOVER.search(text), f"{path.relative_to(project)}: template syntax left"


def test_names_derive_from_the_project_name(tmp_path: Path) -> None:
    project = render(tmp_path, project_name="Billing Service")
    assert project.name == "billing-service"
    assert (project / "src" / "billing_service" / "__init__.py").is_file()
    assert 'name = "billing-service"' in (project / "pyproject.toml").read_text()


def test_local_env_has_a_fresh_secret_and_is_git_ignored(tmp_path: Path) -> None:
    first = render(tmp_path / "a")
    second = render(tmp_path / "b")
    secrets = []
    for project in (first, second):
        env = dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines())
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MFA_ENCRYPTION_KEY"} <= env.keys()
        assert len(env["SECRET_KEY"]) >= 32
        assert len(env["MFA_ENCRYPTION_KEY"]) >= 32
        assert env["MFA_ENCRYPTION_KEY"] != env["SECRET_KEY"]
        secrets.append(env["SECRET_KEY"])
        assert ".env" in (project / ".gitignore").read_text().splitlines()
    assert secrets[0] != secrets[1]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("slug=Acme Billing", "slug 'Acme Billing' is not valid"),
        ("slug=1acme", "slug '1acme' is not valid"),
        ("slug=acme--billing", "slug 'acme--billing' is not valid"),
        ("package=acme-billing", "not a valid lowercase Python identifier"),
        ("package=class", "is a Python keyword"),
        ("package=match", "is a Python keyword"),
        ("package=json", "would shadow the standard library"),
        ("package=celery", "would shadow the dependency 'celery'"),
        ("package=redis", "would shadow the dependency 'redis'"),
        ("slug=acme_billing", "slug 'acme_billing' is not valid"),
    ],
)
def test_invalid_answers_stop_the_render_with_one_line(
    tmp_path: Path, answer: str, reason: str
) -> None:
    result = subprocess.run(
        [BIN / "cookiecutter", "--no-input", str(TEMPLATE), "-o", str(tmp_path), answer],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1, result.stderr
    assert reason in ours[0]
    # cookiecutter 2.7 itself logs a traceback after any failing hook; ours is the first line.
    assert result.stderr.lstrip().startswith("error: ")
    assert list(tmp_path.iterdir()) == []  # nothing left behind


# Answers unlike the defaults in every way a default could leak: words, case, separators.
OWN_ANSWERS = {
    "project_name": "Zephyr Ledger",
    "slug": "zephyr-ledger",
    "package": "zephyr_ledger",
    "description": "Keeps the ledger of every zephyr.",
    "author": "Quinn Example <quinn@zephyr.test>",
}


def default_answers() -> list[str]:
    """The default answers as cookiecutter.json gives them, rendered: every one of them, and
    the pieces a file could carry alone (the author's name and address, the name's words)."""
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    project = context["project_name"]  # "Acme Notes"
    slug = project.lower().replace(" ", "-")
    author = context["author"]
    name, _, address = author.partition(" <")
    return [
        project,
        slug,
        slug.replace("-", "_"),
        context["description"],
        author,
        name,
        address.rstrip(">"),
        *project.split(),  # "Acme", "Notes" in any case: an image tag, a label, a title
    ]


@pytest.mark.parametrize("ci", ["github", "gitlab", "none"])
def test_a_project_made_with_other_answers_carries_no_default_anywhere(
    tmp_path: Path, ci: str
) -> None:
    project = render(tmp_path, kubernetes="yes", ci=ci, **OWN_ANSWERS)
    assert project.name == OWN_ANSWERS["slug"]
    defaults = [word for word in default_answers() if word.lower() != "notes"]
    # "notes" is a feature of the service (POST /api/v1/notes), not the name: checked as part
    # of the full name and slug instead, with "Acme" alone, which names nothing else.
    found = []
    for path in sorted(project.rglob("*")):
        where = path.relative_to(project).as_posix()
        found += [f"{where} (path): {d}" for d in defaults if d.lower() in where.lower()]
        if path.is_file():
            text = path.read_text(errors="replace").lower()
            found += [f"{where}: {d!r}" for d in defaults if d.lower() in text]
    assert not found, "\n".join(found)
    # Where the answers are expected to show: the README's title and description, the
    # distribution's metadata, the OpenAPI title and description.
    readme = (project / "README.md").read_text().splitlines()
    assert readme[0] == f"# {OWN_ANSWERS['project_name']}"
    assert OWN_ANSWERS["description"] in readme
    pyproject = (project / "pyproject.toml").read_text()
    assert OWN_ANSWERS["author"] in pyproject
    app = (project / "src" / OWN_ANSWERS["package"] / "web" / "app.py").read_text()
    assert f'TITLE = "{OWN_ANSWERS["project_name"]}"' in app
    assert f'DESCRIPTION = "{OWN_ANSWERS["description"]}"' in app
    compose = (project / "docker-compose.yml").read_text()
    assert re.search(rf"^name: {OWN_ANSWERS['slug']}$", compose, re.MULTILINE)
