"""Factor IX, fast start: importing the code does no work, and a process started while a
backing service is down waits for it instead of crash-looping."""

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg

from .conftest import TcpProxy, Web, wait_until


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -c code` in a fresh interpreter of this venv, with `env` only (empty by default:
    nothing the test process has set or imported reaches it)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env or {}, capture_output=True, text=True, timeout=30
    )


def test_importing_every_module_reads_no_config_and_connects_nowhere() -> None:
    modules = ["web.app", "web.server", "jobs.worker", "jobs.clock", "jobs.tasks", "admin.release"]
    code = "; ".join(f"import {{ cookiecutter.package }}.{m}" for m in modules)
    # An empty environment: any config read or connection made at import time would fail here.
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_worker_started_while_the_broker_is_down_works_once_it_is_back(
    start: Callable[..., Any],
    proxy: Callable[[str], TcpProxy],
    db: psycopg.Connection[Any],
    migrated: dict[str, str],
    web: Web,  # it only takes the note: the run's web
) -> None:
    broker = proxy(migrated["REDIS_URL"])
    broker.refuse()
    worker = start("worker", BROKER_URL=broker.url(migrated["REDIS_URL"]))
    worker.wait_for_log("Cannot connect", timeout=15)  # retrying, not crashing
    user = web.signed_in()
    note_id = user.post("/api/v1/notes", json={"title": "t", "body": "a b c"}).json()["id"]
    broker.heal()
    wait_until(
        lambda: db.execute(
            "SELECT 1 FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note_id]
        ).fetchone(),
        timeout=30,
    )
    assert worker.popen.poll() is None


def imported_by(*modules: str) -> set[str]:
    """The package's own modules (and Celery's worker machinery, and web's framework) that
    importing `modules` loads, in a fresh interpreter."""
    code = (
        f"import sys, {', '.join(modules)}; "
        "print('\\n'.join(m for m in sys.modules"
        " if m.startswith(('{{ cookiecutter.package }}', 'celery.apps', 'starlette', 'fastapi'))))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_layout_keeps_each_process_type_to_its_own_machinery() -> None:
    web = imported_by("{{ cookiecutter.package }}.web.server")
    assert not {m for m in web if m.startswith(("{{ cookiecutter.package }}.jobs", "celery.apps"))}
    # The clock enqueues and never works: Celery's beat, not the worker and its tasks.
    clock = imported_by("{{ cookiecutter.package }}.jobs.clock") - {"{{ cookiecutter.package }}.jobs.clock"}
    assert not {m for m in clock if m.startswith(("{{ cookiecutter.package }}.jobs.", "celery.apps.worker"))}
    # The shared core imports neither side. One interpreter for all of core: what importing them
    # together loads is the union of what each loads alone (a start costs a CPU-second here).
    shared = ("settings", "logging", "db", "models", "metrics", "sessions", "broker", "tracing")
    core = imported_by(
        "{{ cookiecutter.package }}.core",
        *(f"{{ cookiecutter.package }}.core.{name}" for name in (*shared, "redis_client", "flags")),
    )
    assert not {m for m in core if m.split(".")[1:2] in (["web"], ["jobs"], ["admin"])}
    # Nor web's framework: the worker and the clock would load it with the core they share.
    assert not {m for m in core if m.startswith(("starlette", "fastapi"))}


def test_web_loads_ciphers_and_webauthn_only_when_a_second_factor_needs_them() -> None:
    # Together they cost every web process about 17 MB and a tenth of a second at start, for
    # what only TOTP secrets and passkey ceremonies use.
    code = (
        "import sys, {{ cookiecutter.package }}.web.server; "
        "import {{ cookiecutter.package }}.core.mfa.factors; "
        # (redis-py looks for the cryptography package itself; its ciphers are what cost.)
        "print([m for m in ('cryptography.hazmat.primitives.ciphers', 'webauthn')"
        " if m in sys.modules])"
    )
    result = run_python(code)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# What a web process defers until a request needs it, and then imports once: Celery and kombu at
# the first task it sends (core/task_sender.py), flagd's rule evaluator when there is a flag file
# (core/flag_provider.py). Each is a share of the cold start that bench/startup.py measures.
DEFERRED_BY_WEB = ("celery.app", "kombu.connection", "openfeature.contrib.tools.flagd.core")


def test_a_ready_web_has_not_imported_what_only_some_requests_need(
    migrated: dict[str, str],
) -> None:
    # The app built and its lifespan entered, as a web process has them once it is ready.
    code = (
        "import asyncio, sys\n"
        "from {{ cookiecutter.package }}.core.settings import load_settings\n"
        "from {{ cookiecutter.package }}.web.app import create_app\n"
        "async def ready() -> None:\n"
        "    app = create_app(load_settings())\n"
        "    async with app.router.lifespan_context(app):\n"
        f"        print([m for m in {DEFERRED_BY_WEB!r} if m in sys.modules])\n"
        "asyncio.run(ready())\n"
    )
    result = run_python(code, migrated)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_web_sends_a_task_with_kombu_alone_when_tracing_is_off(
    migrated: dict[str, str],
) -> None:
    # Celery's app is more than twice kombu's memory (core/kombu_sender.py); with tracing off
    # nothing else in web needs it. A queue of its own: no worker of another test runs it.
    code = (
        "import sys\n"
        "from {{ cookiecutter.package }}.core.settings import load_settings\n"
        "from {{ cookiecutter.package }}.core.task_sender import TaskSender\n"
        "tasks = TaskSender(load_settings())\n"
        "tasks.send_task('notes.enrich', [1], {'request_id': 'kombu-only'})\n"
        "tasks.close()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'celery', 'kombu'}))\n"
    )
    env = {**migrated, "TASK_QUEUE": "kombu-only"}
    result = run_python(code, env)
    assert result.stdout.strip() == "['kombu']", result.stdout + result.stderr


def test_only_web_imports_the_rate_limiting_package(migrated: dict[str, str]) -> None:
    # Every process checks RATE_LIMIT and the like (settings.py, by their grammar); only web
    # counts anything with them, so only web pays for importing `limits`.
    others = ["jobs.worker", "jobs.clock", "admin.release", "admin.users", "admin.jobs"]
    code = (
        f"import sys, {', '.join(f'{{ cookiecutter.package }}.{m}' for m in others)}\n"
        "from {{ cookiecutter.package }}.core.settings import load_settings\n"
        "load_settings()\n"
        "print('limits' in sys.modules)\n"
    )
    env = {**migrated, "RATE_LIMIT": "5/minute"}
    result = run_python(code, env)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_no_process_imports_rich_for_tracebacks_it_never_prints() -> None:
    # structlog imports rich whenever it is installed, as it is here in the dev venv: every
    # process type's start would pay for it (__main__.py keeps it out).
    imports = "import sys, {{ cookiecutter.package }}.__main__, structlog"
    code = f"{imports}; print(sys.modules.get('rich') is not None)"
    result = run_python(code)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
