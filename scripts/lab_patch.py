"""Write a workshop lab's break (WORKSHOP.md) as the template's `labs/NN-short-name.patch`.

    .venv/bin/python scripts/lab_patch.py RENDERED_PROJECT NN-short-name

RENDERED_PROJECT is a project rendered from this template, made a git repository with everything
committed before the break (`git init -q && git add -A && git commit -qm base`), with the break
then edited into its files. Its diff against that commit becomes the patch, with the project's
names turned back into the template's variables, so the patch applies to a project of any name.
When main moves and a patch stops applying (tests/test_labs.py says which), render, commit,
`git apply --reject labs/NN-*.patch`, finish the rejected hunks by hand, and run this again.
"""

import re
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
LABS = TEMPLATE / "{{cookiecutter.slug}}" / "labs"


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout


def template_patch(project: Path) -> str:
    git(project, "add", "--all", "--intent-to-add")  # new files show in the diff too
    diff = git(project, "diff", "HEAD")
    if not diff:
        sys.exit(f"error: {project} has no changes against its last commit")
    if re.search(r"\{\{|\{%|\{#|cookiecutter", diff):
        sys.exit("error: the break contains Jinja syntax ({{, {% or {#), which rendering would eat")
    names = {
        (project / "README.md").read_text().splitlines()[0].removeprefix("# "): "project_name",
        project.name: "slug",
        next((project / "src").iterdir()).name: "package",
    }
    # Blob ids name one version of the file: the patch applies by its context lines instead.
    lines = [line for line in diff.splitlines(keepends=True) if not line.startswith("index ")]
    patch = "".join(lines)
    for name, variable in names.items():
        patch = patch.replace(name, "{{ cookiecutter." + variable + " }}")
    return patch


def main() -> None:
    if len(sys.argv) != 3 or not re.fullmatch(r"\d\d-[a-z0-9-]+", sys.argv[2]):
        sys.exit(__doc__)
    project, name = Path(sys.argv[1]).resolve(), sys.argv[2]
    patch = template_patch(project)
    for old in LABS.glob(f"{name[:2]}-*.patch"):
        old.unlink()  # a renamed lab keeps its number
    (LABS / f"{name}.patch").write_text(patch)
    print(f"wrote {(LABS / f'{name}.patch').relative_to(TEMPLATE)}")


if __name__ == "__main__":
    main()
