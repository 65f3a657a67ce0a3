"""What each process type spends getting ready: CPU time (user + system), wall time and memory.

    .venv/bin/python bench/startup.py                     # about 1 minute; writes bench/STARTUP.md
    .venv/bin/python bench/startup.py --project DIR       # an already rendered, installed project
    .venv/bin/python bench/startup.py --project DIR --python PY   # ... run by that interpreter
    .venv/bin/python bench/startup.py --only web --only "bare web"   # some process types only

Every deploy, restart and scale-up pays a process's start, and the generated project's tests
start a few hundred of them (web, worker, clock, release and the admin commands). Wall time to
ready moves with the load on the machine; the CPU a process spent getting there hardly does, so
that is the figure to compare between two versions of the template. Each row is the median of
`--runs` starts (5), one at a time:

  web           exec -> first 200 from /readyz (as run.py's cold start), then SIGTERM
  bare web      the same for bench/baseline.py: FastAPI, uvicorn, redis-py, SQLAlchemy/psycopg
  worker        exec -> Celery's "ready." line (pool children counted), then SIGTERM
  clock         exec -> "beat: Acquired lock", then SIGTERM
  release       exec -> exit, migrations already applied (what every deploy after the first runs)
  users list, jobs queues, jobs dead list     exec -> exit

CPU is the process's user + system time from /proc (plus its children's, for the worker's pool)
at the moment it was ready, or from wait4() for those that exit; memory is VmRSS at ready, or
the peak resident size of those that exit. Renders and installs exactly as run.py does (from
requirements.lock, with bytecode compiled), with a throw-away database and Redis DB.
"""

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import run  # bench/run.py: rendering, services, processes

READY_LINES = {"worker": '"worker', "clock": "beat: Acquired lock"}


@dataclass(frozen=True)
class Start:
    wall_s: float
    cpu_s: float
    rss_mb: float


def tree_cpu_seconds(pid: int) -> float:
    """The process's CPU time plus that of its children (the worker's pool), so far."""
    total = run.cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone meanwhile
            total += tree_cpu_seconds(int(child))
    return total


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, marker: str, after: int) -> None:
    """Until a line containing marker appears in log past byte offset after (poll: 5 ms)."""
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready; see {log}")
        with log.open("rb") as lines:
            lines.seek(after)
            for line in lines:
                text = line.decode(errors="replace")
                if marker in text and (marker != '"worker' or ' ready."' in text):
                    return
        time.sleep(0.005)
    raise TimeoutError(f"no {marker!r} in {log} after 30 s")


def served(project: run.Project, args: list[str], name: str) -> Start:
    """A long-running process: exec -> ready, measured then, stopped with SIGTERM."""
    log = project.logs / f"{name}.log"
    log.touch()
    offset = log.stat().st_size
    port = run.free_port()
    started = time.perf_counter()
    proc = run.start(project, args, log.name, PORT=str(port))
    with run.running(proc):
        if name in READY_LINES:
            wait_for_line(proc, log, READY_LINES[name], offset)
        else:
            run.wait_ready(proc, port)
        wall = time.perf_counter() - started
        return Start(wall, tree_cpu_seconds(proc.pid), run.rss_mb(proc.pid))


def one_shot(project: run.Project, args: list[str], name: str) -> Start:
    """A process that does its job and exits: exec -> exit, its own and children's rusage."""
    started = time.perf_counter()
    with open(project.logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            [str(project.python), *args],
            cwd=project.root,
            env=project.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
    return Start(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def measure(project: run.Project, runs: int, only: list[str]) -> dict[str, list[Start]]:
    module = ["-m", run.PACKAGE]
    kinds: dict[str, tuple[Callable[..., Start], list[str]]] = {
        "web": (served, [*module, "web"]),
        "bare web": (served, run.baseline_args()),
        "worker": (served, [*module, "worker"]),
        "clock": (served, [*module, "clock"]),
        "release": (one_shot, [*module, "release"]),
        "users list": (one_shot, [*module, "users", "list"]),
        "jobs queues": (one_shot, [*module, "jobs", "queues"]),
        "jobs dead list": (one_shot, [*module, "jobs", "dead", "list"]),
    }
    chosen = {name: kinds[name] for name in only or kinds}
    results: dict[str, list[Start]] = {name: [] for name in chosen}
    for _ in range(runs):  # round-robin: a burst of load spreads over every kind
        for name, (how, args) in chosen.items():
            results[name].append(how(project, args, name))
    return results


def report(results: dict[str, list[Start]], runs: int, started: str, load: str) -> str:
    lines = [
        "# Start-up cost per process type (`bench/startup.py`)",
        "",
        f"- Date: {started}; {run.machine()}; 1-min load average {load}",
        f"- Median of {runs} starts each, taken in turn; CPU = user + system time until ready",
        "",
        "| Process | CPU to ready | Wall to ready | Memory (VmRSS at ready, or peak) |",
        "|---|---:|---:|---:|",
    ]
    for name, starts in results.items():
        cpu = statistics.median(s.cpu_s for s in starts)
        wall = statistics.median(s.wall_s for s in starts)
        rss = statistics.median(s.rss_mb for s in starts)
        lines.append(f"| {name} | {cpu:.2f} s | {wall:.2f} s | {rss:.0f} MB |")
    lines += ["", "Every start, CPU s:"]
    for name, starts in results.items():
        lines.append(f"- {name}: {', '.join(f'{s.cpu_s:.2f}' for s in starts)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a rendered, installed, released project")
    parser.add_argument("--python", type=Path, help="its interpreter (default: its .venv's)")
    parser.add_argument("--runs", type=int, default=5, help="starts per process type (5)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis logical DB to claim (13)")
    parser.add_argument(
        "--only", action="append", default=[], help="measure this process type only (repeatable)"
    )
    parser.add_argument("--output", type=Path, default=run.BENCH_DIR / "STARTUP.md")
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = run.load_average()
    with ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="twelve-start-")))
        root = args.project or run.render_and_install(workdir)
        python = args.python or root / ".venv" / "bin" / "python"
        redis_db = run.claim_redis_db(python, args.redis_db)
        cleanup.callback(run.release_redis_db, python, redis_db)
        database = f"start_{os.getpid()}"
        project = run.Project(
            root=root,
            python=python,
            database=database,
            env=run.service_env(database, run.free_port(), redis_db),
            logs=workdir / "logs",
        )
        project.logs.mkdir()
        subprocess.run(["createdb", *run.PG_ARGS, database], check=True)
        cleanup.callback(subprocess.run, ["dropdb", *run.PG_ARGS, "--if-exists", database])
        one_shot(project, ["-m", run.PACKAGE, "release"], "first-release")
        run.log(f"{args.runs} starts of each process type")
        results = measure(project, args.runs, args.only)
    loads = f"{load} at the start, {run.load_average()} at the end"
    text = report(results, args.runs, started, loads)
    print(text)
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    main()
