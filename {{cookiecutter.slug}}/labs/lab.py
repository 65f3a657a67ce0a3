"""The workshop's labs (WORKSHOP.md): break a factor, watch its test fail, repair it.

    python labs/lab.py apply 06        make lab N=06     apply lab 06's break
    python labs/lab.py apply           make lab          list the labs
    python labs/lab.py reset           make lab-reset    undo the applied break
    python labs/lab.py checkpoint [F]  make checkpoint   the tests behind each factor (FACTORS.md)

Each break is a patch in this folder, applied with `git apply` (which needs no repository). The
applied lab is remembered in `.lab` (git-ignored), so `reset` knows what to undo and a second lab
is refused until then. Which tests catch a lab, and what they fail with, is written once, in
WORKSHOP.md, the page learners read: this script and the template's own tests read it there.
Standard library only: it runs before anything else works.
"""

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".lab"

_HEADING = re.compile(r"^## Lab (\d\d) · (.+)$", re.M)
_WATCH = re.compile(
    r"\*\*Watch it fail:\*\* `\.venv/bin/pytest (?P<tests>[^`]+)`\s+fails with\s+"
    r"(?P<expect>`[^`]+`(?:\s+(?:and|or)\s+`[^`]+`)*)"
)
_FACTOR_TEST = re.compile(r"`(tests/[\w/]+\.py::\w+)`")


@dataclass(frozen=True)
class Lab:
    number: str
    title: str
    patch: Path
    tests: list[str]  # pytest node ids, as WORKSHOP.md's command gives them
    expect: list[str]  # text the failure shows
    expect_all: bool  # every one of `expect` ("and"), or any one ("or")

    @property
    def command(self) -> str:
        return ".venv/bin/pytest " + " ".join(_quoted(test) for test in self.tests)


def _quoted(test: str) -> str:
    return f'"{test}"' if "[" in test else test


def labs(root: Path = ROOT) -> dict[str, Lab]:
    """Every lab WORKSHOP.md describes, by number; each must have exactly one patch."""
    text = (root / "WORKSHOP.md").read_text()
    headings = list(_HEADING.finditer(text))
    found: dict[str, Lab] = {}
    for n, heading in enumerate(headings):
        end = headings[n + 1].start() if n + 1 < len(headings) else len(text)
        section = " ".join(text[heading.end() : end].split())
        number = heading[1]
        watch = _WATCH.search(section)
        if watch is None:
            raise ValueError(f"WORKSHOP.md, lab {number}: no '**Watch it fail:** ... fails with'")
        patches = sorted((root / "labs").glob(f"{number}-*.patch"))
        if len(patches) != 1:
            raise ValueError(f"lab {number}: expected one labs/{number}-*.patch, found {patches}")
        tests = [test.strip('"') for test in watch["tests"].split()]
        found[number] = Lab(
            number=number,
            title=heading[2].strip(),
            patch=patches[0],
            tests=tests,
            expect=re.findall(r"`([^`]+)`", watch["expect"]),
            expect_all=" and `" in watch["expect"],
        )
    return found


def factors(root: Path = ROOT) -> dict[str, list[str]]:
    """FACTORS.md's rows: each factor and the tests that prove it."""
    rows = {}
    for line in (root / "FACTORS.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 4 and (tests := _FACTOR_TEST.findall(cells[2])):
            rows[cells[0]] = tests
    return rows


def git(*args: str) -> subprocess.CompletedProcess[str]:
    # Git looks for a repository no higher than this project: a project inside someone else's
    # repository would otherwise have the patch's paths read from that repository's top.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(ROOT.parent)}
    return subprocess.run(["git", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def changed_files(lab: Lab) -> str:
    numstat = git("apply", "--numstat", str(lab.patch)).stdout.splitlines()
    return ", ".join(line.split("\t")[-1] for line in numstat)


def applied() -> Lab | None:
    if not STATE.exists():
        return None
    return labs().get(STATE.read_text().strip())


def apply(number: str | None) -> int:
    every = labs()
    if number is None:
        for each in every.values():
            print(f"  {each.number}  {each.title}")
        print("Apply one with: make lab N=<number>  (WORKSHOP.md says what each one breaks)")
        return 0
    if (current := applied()) is not None:
        print(f"lab {current.number} ({current.title}) is applied: `make lab-reset` first")
        return 1
    lab = every.get(number.zfill(2))
    if lab is None:
        print(f"there is no lab {number}: they are {', '.join(every)}")
        return 2
    check = git("apply", "--check", str(lab.patch))
    if check.returncode != 0:
        print(f"lab {lab.number} does not apply: the lines it breaks were changed here already")
        print(check.stderr.strip())
        return 1
    git("apply", str(lab.patch)).check_returncode()
    STATE.write_text(lab.number + "\n")
    print(f"Lab {lab.number} applied: {lab.title}. Changed: {changed_files(lab)}")
    print(f"Watch it fail:  {lab.command}")
    print("Then repair it: by hand, or `make lab-reset`; then `make checkpoint`.")
    return 0


def reset() -> int:
    lab = applied()
    if lab is None:
        STATE.unlink(missing_ok=True)
        print("no lab is applied")
        return 0
    if git("apply", "--reverse", "--check", str(lab.patch)).returncode == 0:
        git("apply", "--reverse", str(lab.patch)).check_returncode()
        print(f"Lab {lab.number} undone: {changed_files(lab)} as before the break")
    elif git("apply", "--check", str(lab.patch)).returncode == 0:
        print(f"Lab {lab.number} was repaired by hand already: nothing to undo")
    else:
        print(f"lab {lab.number} cannot be undone: the lines it changed were edited since.")
        print(f"Finish the repair by hand (compare with {lab.patch.relative_to(ROOT)}), then")
        print("run `make lab-reset` again, or delete .lab to move on.")
        return 1
    STATE.unlink()
    return 0


def checkpoint(only: list[str]) -> int:
    rows = factors()
    if only:
        rows = {factor: tests for factor, tests in rows.items() if _named(factor, only)}
        if not rows:
            print(f"no factor in FACTORS.md starts with {' or '.join(only)}")
            return 2
    tests = list(dict.fromkeys(test for named in rows.values() for test in named))
    rows_named = f"{len(rows)} factor{'s' if len(rows) > 1 else ''}"
    print(f"Checkpoint: {len(tests)} tests behind {rows_named} (FACTORS.md), one pytest run")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        options = ["-q", "--tb=line", "-rN", "-p", "no:cacheprovider", f"--junitxml={report}"]
        run = subprocess.run([sys.executable, "-m", "pytest", *options, *tests], cwd=ROOT)
        if not report.exists():
            print(f"pytest ended with {run.returncode} and no report: see above")
            return 1
        outcomes = _outcomes(report)
    print()
    passing = 0
    for factor, named in rows.items():
        bad = [test for test in named if outcomes.get(test) != "pass"]
        passing += not bad
        print(f"  {'pass' if not bad else 'FAIL'}  {factor.split(' (')[0]}")
        for test in bad:
            print(f"          {outcomes.get(test, 'not run')}: {test}")
    if (lab := applied()) is not None:
        print(f"Lab {lab.number} is still applied (make lab-reset undoes it).")
    green = passing == len(rows)
    print(f"{passing} of {len(rows)} pass{': the service is green' if green and not only else ''}.")
    return 0 if green else 1


def _named(factor: str, names: list[str]) -> bool:
    """`VI` names "VI. Processes" (not "VII. ..."); `health` names "Health checks"."""
    factor = factor.lower()
    first = re.split(r"[\s.:]", factor)[0]
    return any(
        name.lower() == first
        or (not re.fullmatch(r"[ivx]+", name.lower()) and factor.startswith(name.lower()))
        for name in names
    )


def _outcomes(report: Path) -> dict[str, str]:
    """`tests/x.py::test_y` -> pass, or how it went wrong (any of its parameters counts)."""
    outcomes: dict[str, str] = {}
    # pytest's own report, written a moment ago by this script: not untrusted input.
    for case in ElementTree.parse(report).iter("testcase"):  # noqa: S314
        test = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name', '')}"
        test = test.split("[")[0]
        outcome = "pass"
        if case.find("failure") is not None:
            outcome = "failed"
        elif case.find("error") is not None:
            outcome = "error"
        if outcomes.get(test, "pass") == "pass":  # skipped (no RabbitMQ) does not spoil a pass
            outcomes[test] = outcome
    return outcomes


def main(argv: list[str]) -> int:
    match argv:
        case ["apply"]:
            return apply(None)
        case ["apply", number]:
            return apply(number)
        case ["reset"]:
            return reset()
        case ["checkpoint", *only]:
            return checkpoint(only)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
