"""Feature flags (core/flags.py): deploy is not release. Flags come from the environment and a
flag file in flagd's format, through OpenFeature, in real web and worker processes; a changed
file takes effect without a restart, a broken one changes nothing; stale flags fail CI."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg

from {{ cookiecutter.package }}.core import flags
from {{ cookiecutter.package }}.core.flag_provider import parse_flag_file

from .conftest import PLAIN_HTTP, ROOT, Process, Web, broker_client, new_email, wait_until

RELOAD = 0.2  # FLAGS_RELOAD_SECONDS in these tests: the bound on a change taking effect
BODY = "Flags ship dark. Releasing them is a config change."
SUMMARY = "Flags ship dark."


def boolean(default: str, **rules: Any) -> dict[str, Any]:
    """A boolean flag in flagd's format, with variants `on` and `off`."""
    return {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": default,
        **({"targeting": rules} if rules else {}),
    }


def write_flags(path: Path, flag_set: dict[str, Any] | str) -> Path:
    """Replace the flag file at once, as a ConfigMap update or `mv` does: never half-written."""
    text = flag_set if isinstance(flag_set, str) else json.dumps({"flags": flag_set})
    part = path.with_suffix(".part")
    part.write_text(text)
    os.replace(part, path)
    return path


def enriched(db: psycopg.Connection[Any], note_id: int) -> tuple[str | None] | None:
    """(summary,) once the worker has enriched the note."""
    return db.execute(
        "SELECT summary FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note_id]
    ).fetchone()


def post_note(user: httpx.Client, body: str = BODY) -> int:
    response = user.post("/api/v1/notes", json={"title": "t", "body": body})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def access_line(web: Web, response: httpx.Response) -> dict[str, Any]:
    rid = response.headers["x-request-id"]
    return wait_until(  # type: ignore[no-any-return]
        lambda: next(
            (r for r in web.records() if r.get("event") == "request" and r["request_id"] == rid),
            None,
        ),
        timeout=5,
    )


def sign_up_answer(web: Web) -> int:
    """The status of a sign-up that would fail the password rules: 503 while the kill switch
    is off (checked first), 422 otherwise. No account is made and no password hashed."""
    body = {"email": new_email(), "password": "short"}
    return web.client.post("/api/v1/users", json=body).status_code


def lines(process: Process, event: str) -> list[dict[str, Any]]:
    return [r for r in process.records() if r.get("event") == event]


def enrichment_line(worker: Process, note_id: int) -> dict[str, Any] | None:
    return next((r for r in lines(worker, "note enriched") if r["note_id"] == note_id), None)


def sample(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as exposed
    for line in metrics.splitlines():
        if line.startswith(name + "{" + wanted + "} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_environment_turns_flags_on_and_off_per_deploy(
    start: Callable[..., Any], db: psycopg.Connection[Any]
) -> None:
    # "Staging": the same build with the summary released.
    staging: Web = start("web", FLAG_NOTE_SUMMARY="on")
    worker: Process = start("worker", FLAG_NOTE_SUMMARY="on")
    staging.wait_ready()
    user = staging.signed_in()
    note_id = post_note(user)
    assert wait_until(lambda: enriched(db, note_id), timeout=20) == (SUMMARY,)
    response = user.get(f"/api/v1/notes/{note_id}")
    assert response.json()["summary"] == SUMMARY
    assert access_line(staging, response)["flags"] == {"note-summary": "on"}
    done = wait_until(partial(enrichment_line, worker, note_id), timeout=5)
    assert done["flags"] == {"note-summary": "on"}
    assert (
        sample(
            staging.client.get("/metrics").text,
            "feature_flag_evaluations_total",
            flag="note-summary",
            variant="on",
        )
        >= 1
    )
    port = worker.env["WORKER_METRICS_PORT"]
    worker_metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", verify=PLAIN_HTTP).text
    assert (
        sample(worker_metrics, "feature_flag_evaluations_total", flag="note-summary", variant="on")
        >= 1
    )

    # "Production": the same build, summary off and sign-up switched off, by environment only.
    production: Web = start("web", FLAG_NOTE_SUMMARY="off", FLAG_SIGN_UP="Off", FLAG_DARK_MODE="on")
    production.wait_ready()
    same_user = production.new_client(cookies=user.cookies)  # one Redis: the session is shared
    response = same_user.get(f"/api/v1/notes/{note_id}")
    assert response.json()["summary"] is None  # stored, and not shown
    assert access_line(production, response)["flags"] == {"note-summary": "off"}
    signup = production.client.post(
        "/api/v1/users", json={"email": new_email(), "password": "a long and unguessable pass"}
    )
    assert signup.status_code == 503, signup.text
    assert access_line(production, signup)["flags"] == {"sign-up": "off"}
    assert sign_up_answer(staging) == 422  # not switched off there: on to the password rules
    [undeclared] = lines(production, "FLAG_ variables name flags the code does not declare")
    assert undeclared["flags"] == ["dark-mode"]


def test_a_percentage_rollout_is_stable_per_user_and_near_its_share(
    start: Callable[..., Any],
    db: psycopg.Connection[Any],
    migrated: dict[str, str],
    tmp_path: Path,
) -> None:
    path = write_flags(
        tmp_path / "flags.json",
        {"note-summary": boolean("off", fractional=[["on", 30], ["off", 70]])},
    )
    # 1,000 users with a note each, written straight to the database: through the API, each
    # would cost a password hash. The worker evaluates the flag for each note's owner.
    tag = os.urandom(4).hex()
    db.execute(
        "INSERT INTO users (email, password_hash) "
        "SELECT 'rollout-' || g || '-' || %s || '@example.com', '-' "
        "FROM generate_series(1, 1000) g",
        [tag],
    )
    notes = dict(
        db.execute(
            "INSERT INTO notes (owner_id, title, body) SELECT id, 't', %s FROM users "
            "WHERE email LIKE %s RETURNING id, owner_id",
            [BODY, f"rollout-%-{tag}@example.com"],
        ).fetchall()
    )
    assert len(notes) == 1000
    sender = broker_client(migrated)

    def enrich(note_ids: list[int]) -> dict[int, bool]:
        """Enrich these notes (again); which owners got a summary."""
        db.execute(
            "UPDATE notes SET enriched_at = NULL, summary = NULL WHERE id = ANY(%s)", [note_ids]
        )
        for note_id in note_ids:
            sender.send_task("notes.enrich", args=[note_id], queue=migrated["TASK_QUEUE"])

        def done() -> list[tuple[int, bool]] | None:
            rows = db.execute(
                "SELECT owner_id, summary IS NOT NULL FROM notes "
                "WHERE id = ANY(%s) AND enriched_at IS NOT NULL",
                [note_ids],
            ).fetchall()
            return rows if len(rows) == len(note_ids) else None

        return dict(wait_until(done, timeout=90, interval=0.5))

    worker: Process = start("worker", FLAGS_FILE=str(path))
    first = enrich(list(notes))
    share = sum(first.values()) / len(first)
    assert abs(share - 0.30) < 0.05, share  # 0.05 is over three standard deviations
    worker.stop()
    # Another process, the same answers: the bucket is a hash of flag and user, not a draw.
    worker = start("worker", FLAGS_FILE=str(path))
    again = list(notes)[:250]
    assert enrich(again) == {notes[n]: first[notes[n]] for n in again}
    sender.close()

    # The web asks the same question for the same user, and gets the same answer.
    web: Web = start("web", FLAGS_FILE=str(path))
    web.wait_ready()
    seen = set()
    for _ in range(40):  # until both answers were seen (each user: 30% on)
        user = web.signed_in()
        note_id = post_note(user)
        summary = wait_until(partial(enriched, db, note_id), timeout=20)[0]
        response = user.get(f"/api/v1/notes/{note_id}")
        web_variant = access_line(web, response)["flags"]["note-summary"]
        done = wait_until(partial(enrichment_line, worker, note_id), timeout=5)
        assert done["flags"]["note-summary"] == web_variant
        assert (
            (summary is not None)
            == (web_variant == "on")
            == (response.json()["summary"] == SUMMARY)
        )
        assert user.get(f"/api/v1/notes/{note_id}").json() == response.json()  # stable
        seen.add(web_variant)
        if seen == {"on", "off"}:
            break
    assert seen == {"on", "off"}


def test_editing_the_flag_file_flips_running_web_and_worker(
    start: Callable[..., Any], db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = write_flags(
        tmp_path / "flags.json", {"note-summary": boolean("off"), "sign-up": boolean("on")}
    )
    env = {"FLAGS_FILE": str(path), "FLAGS_RELOAD_SECONDS": str(RELOAD)}
    web: Web = start("web", **env)
    worker: Process = start("worker", WORKER_CONCURRENCY="1", **env)  # one child: the same one
    web.wait_ready()
    user = web.signed_in()
    before = post_note(user)
    assert wait_until(lambda: enriched(db, before), timeout=20) == (None,)
    assert sign_up_answer(web) == 422
    loaded = len(lines(worker, "flag file loaded"))

    write_flags(path, {"note-summary": boolean("on"), "sign-up": boolean("off")})
    changed = time.monotonic()
    wait_until(lambda: sign_up_answer(web) == 503, timeout=RELOAD + 5)
    took = time.monotonic() - changed
    wait_until(lambda: len(lines(worker, "flag file loaded")) > loaded, timeout=RELOAD + 5)
    after = post_note(user)
    assert wait_until(lambda: enriched(db, after), timeout=20) == (SUMMARY,)
    assert user.get(f"/api/v1/notes/{after}").json()["summary"] == SUMMARY
    # Neither process restarted: the same ones answered before and after.
    assert web.popen.poll() is None
    assert worker.popen.poll() is None
    print(f"sign-up switched off {took:.2f} s after the edit (checks every {RELOAD} s)")


def test_a_malformed_flag_file_is_refused_once_and_the_last_good_flags_stay(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    path = write_flags(tmp_path / "flags.json", {"sign-up": boolean("off")})
    env = {"FLAGS_FILE": str(path), "FLAGS_RELOAD_SECONDS": str(RELOAD)}
    web: Web = start("web", **env)
    web.wait_ready()
    assert sign_up_answer(web) == 503

    write_flags(path, '{"flags": {"sign-up": {"state": "ENABLED",')  # cut short
    refused = web.wait_for_log("flag file refused")
    assert refused["level"] == "error"
    assert refused["error"].startswith("not JSON: Expecting")
    time.sleep(RELOAD * 5)  # five more checks of the same bad file
    assert len(lines(web, "flag file refused, the last good flags stay")) == 1
    assert sign_up_answer(web) == 503  # the last good file still says off

    # Valid JSON that flagd's format refuses is refused alike, naming the flag.
    write_flags(path, {"sign-up": {"state": "SOMETIMES", "variants": {"on": True}}})
    wait_until(lambda: len(lines(web, "flag file refused, the last good flags stay")) == 2, 5)
    assert "flag 'sign-up'" in lines(web, "flag file refused, the last good flags stay")[1]["error"]
    assert sign_up_answer(web) == 503
    assert "Traceback" not in "\n".join(web.lines)

    # A process that starts with a broken file has no last good flags: the code's defaults.
    fresh: Web = start("web", **env)
    fresh.wait_ready()
    assert len(lines(fresh, "flag file refused, the last good flags stay")) == 1
    assert sign_up_answer(fresh) == 422  # sign-up's default: on


def test_an_evaluation_error_gives_the_declared_default_and_is_counted(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    # A well-formed flagd file the code cannot use: sign-up's variants are strings, not
    # booleans, and note-summary's rule picks a variant that does not exist.
    path = write_flags(
        tmp_path / "flags.json",
        {
            "sign-up": {
                "state": "ENABLED",
                "variants": {"yes": "yes", "no": "no"},
                "defaultVariant": "no",
            },
            "note-summary": boolean("off", **{"if": [True, "everyone"]}),
        },
    )
    web: Web = start("web", FLAGS_FILE=str(path))
    web.wait_ready()
    signup = web.client.post(
        "/api/v1/users", json={"email": new_email(), "password": "a long and unguessable pass"}
    )
    assert signup.status_code == 201, signup.text  # sign-up's default is on
    assert access_line(web, signup)["flags"] == {"sign-up": "error"}
    user = web.signed_in()
    response = user.get(f"/api/v1/notes/{post_note(user)}")
    assert response.status_code == 200
    assert response.json()["summary"] is None  # note-summary's default is off
    metrics = web.client.get("/metrics").text
    assert (
        sample(
            metrics, "feature_flag_evaluation_errors_total", flag="sign-up", error="TYPE_MISMATCH"
        )
        >= 2
    )
    assert (
        sample(
            metrics, "feature_flag_evaluation_errors_total", flag="note-summary", error="GENERAL"
        )
        >= 2
    )
    assert sample(metrics, "feature_flag_evaluations_total", flag="sign-up", variant="error") >= 2
    failed = lines(web, "flag evaluation failed, using the default")
    assert sorted(r["flag"] for r in failed) == ["note-summary", "sign-up"]  # once each


# --- The stale-flag check ----------------------------------------------------------------------

PACKAGE_DIR = Path(flags.__file__).resolve().parent.parent
# Where deploys set flags: FLAG_<NAME>= or FLAG_<NAME>: in the committed environment files.
ENVIRONMENTS = [".env.example", "docker-compose.yml", "k8s/*.yaml"]
FLAG_VARIABLE = re.compile(r"\b(FLAG_[A-Z0-9_]+)\s*[=:]")


def stale_flags(root: Path, package: Path, today: date) -> list[str]:
    """Every reason a flag is stale: past its expiry, used by no code, or set somewhere (the
    flag files in flags/, the environment files) without being declared in core/flags.py."""
    problems = []
    constants = {name: v for name, v in vars(flags).items() if isinstance(v, flags.Flag)}
    declared = flags.DECLARED
    if sorted(f.key for f in constants.values()) != sorted(declared):
        problems.append("core/flags.py: DECLARED must list each flag constant once")
    code = "\n".join(
        p.read_text() for p in package.rglob("*.py") if p != package / "core" / "flags.py"
    )
    for name, flag in constants.items():
        if flag.expires < today:
            problems.append(f"{flag.key}: expired on {flag.expires} (owner: {flag.owner})")
        if not re.search(rf"\b{name}\b", code):
            problems.append(f"{flag.key}: declared but used nowhere ({name})")
    for path in sorted((root / "flags").glob("*.json")):
        _, keys = parse_flag_file(path.read_bytes())  # and the file must be valid
        problems += [f"flags/{path.name}: {k} is not declared" for k in keys if k not in declared]
    for pattern in ENVIRONMENTS:
        for path in sorted(root.glob(pattern)):
            for variable in FLAG_VARIABLE.findall(path.read_text()):
                key = variable.removeprefix("FLAG_").lower().replace("_", "-")
                if key not in declared:
                    problems.append(f"{path.relative_to(root)}: {variable} is not declared")
    return problems


def test_no_flag_is_expired_undeclared_or_unused() -> None:
    problems = stale_flags(ROOT, PACKAGE_DIR, date.today())
    assert not problems, "stale flags:\n" + "\n".join(problems)


def test_the_stale_flag_check_fails_on_each_kind_of_stale_flag(tmp_path: Path) -> None:
    """Shown on a temporary copy of the project, broken four ways; this one stays intact."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".env", "*cache*"))
    package = copy / "src" / PACKAGE_DIR.name

    def edit(path: Path, old: str, new: str) -> None:
        text = path.read_text()
        assert old in text, (path, old)
        path.write_text(text.replace(old, new))

    declaration = re.search(r"expires=date\([^)]*\)", (package / "core/flags.py").read_text())
    assert declaration is not None
    edit(package / "core/flags.py", declaration.group(0), "expires=date(2020, 1, 31)")
    edit(package / "web/api/users.py", "SIGN_UP", "NOTE_SUMMARY")  # its only use, gone
    edit(copy / "flags/flags.json", '"sign-up"', '"dark-mode"')
    (copy / ".env.example").write_text((copy / ".env.example").read_text() + "FLAG_BETA=on\n")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # In this process, whatever PYTEST_XDIST_AUTO_NUM_WORKERS the run was given: set to
            # 6, this one test started six test processes and ran out of its minute.
            "-n",
            "0",
            "tests/test_flags.py::test_no_flag_is_expired_undeclared_or_unused",
        ],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy / "src")},  # the copy's code, not ours
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for problem in (
        f"{flags.NOTE_SUMMARY.key}: expired on 2020-01-31 (owner: {flags.NOTE_SUMMARY.owner})",
        "sign-up: declared but used nowhere (SIGN_UP)",
        "flags/flags.json: dark-mode is not declared",
        ".env.example: FLAG_BETA is not declared",
    ):
        assert problem in result.stdout, result.stdout
