"""Where does the generated web process spend its time under load? A sampling profile per endpoint.

    .venv/bin/python bench/profile.py            # about 1.5 minutes; writes bench/PROFILE.md

Renders and installs the template exactly as run.py does, starts one `web` process, and for each
of /livez, GET /api/v1/session and GET /api/v1/notes/{id}: puts it under wrk load and records it
with py-spy (installed into a scratch venv, not into the project). Each sample is put in the
bucket of the innermost frame that matches one of BUCKETS below, so the table reads as "share of
the process's busy time", adding up to 100 %. The raw stacks and a flame graph per endpoint are
kept next to the report for a closer look.

py-spy runs with --nonblocking at 100 Hz: stopping the process for each sample (its default)
slows a busy asyncio server by half or more and would distort what it measures.
"""

import argparse
import re
import subprocess
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import run  # bench/run.py: rendering, processes, wrk

# (bucket, pattern on "function (file:line)") in priority order: a sample goes to the innermost
# frame that matches any pattern, and that frame's first matching bucket in this list.
BUCKETS: list[tuple[str, str]] = [
    (
        "access log line: structlog + logging + JSON render + write",
        r"structlog/|/logging/__init__|acme_notes/logging",
    ),
    (
        "sync dependencies: threadpool hop",
        r"anyio/|starlette/concurrency|threading\.py|queue\.py",
    ),
    ("psycopg: query send/receive, connect, rollback", r"psycopg/"),
    ("SQLAlchemy: session, ORM, pool, pre-ping", r"sqlalchemy/"),
    ("redis-py client", r"redis/"),
    (
        "request id, deadline, access-log middlewares (own code)",
        r"acme_notes/(request_id|deadline|access_log)|uuid\.py|asyncio/timeouts",
    ),
    ("sessions: cookie check, HMAC, JSON", r"acme_notes/sessions|hmac\.py|base64\.py"),
    (
        "FastAPI routing: include_router matching",
        r"_IncludedRouter|_EffectiveRouteContext|\bmatches \(|Router\.(app|handle|__call__)",
    ),
    ("FastAPI dependency resolution", r"solve_dependencies|fastapi/dependencies/"),
    ("response model: pydantic validate + serialize", r"pydantic|serialize_response|encoders"),
    ("route handler (acme_notes/api, health)", r"acme_notes/"),
    ("uvicorn + httptools: parse, socket write", r"uvicorn/|httptools"),
    ("starlette / FastAPI request plumbing", r"starlette/|fastapi/"),
    ("asyncio event loop", r"asyncio/"),
]
_COMPILED = [(name, re.compile(pattern)) for name, pattern in BUCKETS]
PY_SPY_RATE = 100
PY_SPY_MODE: list[str] = []  # set by --nonblocking


def bucket(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost first
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def summarise(raw: Path) -> Counter[str]:
    """py-spy's raw output: one "frame;frame;...;frame COUNT" line per distinct stack."""
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            totals[bucket(stack.split(";"))] += int(count)
    return totals


def install_py_spy(workdir: Path) -> Path:
    venv = workdir / "py-spy-venv"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(venv), "py-spy"], check=True)
    return venv / "bin" / "py-spy"


def profile_endpoint(
    opts: run.Options,
    py_spy: Path,
    server: run.Server,
    path: str,
    headers: dict[str, str],
    out: Path,
    seconds: int,
) -> run.LoadResult:
    """wrk for seconds + 2, with py-spy recording the middle `seconds` of it."""
    run.wrk(opts, server, path, headers, 2)  # warm-up
    result: list[run.LoadResult] = []
    load = threading.Thread(
        target=lambda: result.append(run.wrk(opts, server, path, headers, seconds + 2))
    )
    load.start()
    time.sleep(1)
    base = [str(py_spy), "record", "--pid", str(server.pid), *PY_SPY_MODE]
    subprocess.run(
        [*base, "-r", str(PY_SPY_RATE), "-d", str(seconds), "-f", "raw", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    load.join()
    return result[0]


def flamegraph(
    py_spy: Path,
    server: run.Server,
    opts: run.Options,
    path: str,
    headers: dict[str, str],
    out: Path,
) -> None:
    load = threading.Thread(target=lambda: run.wrk(opts, server, path, headers, 5))
    load.start()
    time.sleep(0.5)
    subprocess.run(
        [
            str(py_spy),
            "record",
            "--pid",
            str(server.pid),
            *PY_SPY_MODE,
            "-r",
            str(PY_SPY_RATE),
            "-d",
            "4",
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    load.join()


def render(rows: list[tuple[str, run.LoadResult, Counter[str]]], seconds: int) -> str:
    lines = [
        "# Where the generated web process spends its time",
        "",
        f"`bench/profile.py`: py-spy --nonblocking at {PY_SPY_RATE} Hz for {seconds} s per "
        "endpoint under `wrk -t1 -c32`; each sample is put in the bucket of its innermost "
        "matching frame (see BUCKETS in the script). Shares are of the samples where the "
        "process was busy.",
        "",
    ]
    for label, load, totals in rows:
        total = sum(totals.values())
        lines += [
            f"## {label}: {load.rps:,.0f} req/s while profiled, {load.cpu_us:.0f} µs CPU per "
            "request",
            "",
            "| Bucket | Share | ≈ µs per request |",
            "|---|---:|---:|",
        ]
        for name, count in totals.most_common():
            share = count / total
            lines.append(f"| {name} | {share:.0%} | {share * load.cpu_us:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="recorded seconds per endpoint")
    parser.add_argument("--output", type=Path, default=run.BENCH_DIR / "PROFILE.md")
    parser.add_argument("--keep", action="store_true", help="keep the rendered project")
    parser.add_argument(
        "--nonblocking", action="store_true", help="sample without pausing the process"
    )
    args = parser.parse_args()
    if args.nonblocking:
        PY_SPY_MODE.append("--nonblocking")
    opts = run.Options(
        threads=1,
        connections=32,
        duration_s=args.seconds,
        warmup_s=2,
        rounds=1,
        runs=0,
        notes=0,
        redis_db=14,
        keep=args.keep,
        output=args.output,
    )
    artefacts = args.output.parent / "profile"
    artefacts.mkdir(exist_ok=True)
    rows = []
    with ExitStack() as cleanup:
        project = run.prepare(opts, cleanup)
        py_spy = install_py_spy(project.root.parent)
        port = int(project.env["PORT"])
        web = cleanup.enter_context(run.running(run.start(project, run.web_args(), "web.log")))
        run.wait_ready(web, port)
        cookie = run.create_session(port)
        note_id = run.post_notes(port, 1)[0]
        server = run.Server(port, web.pid)
        for name, label, path, headers in [
            ("livez", "GET /livez", "/livez", {}),
            ("session", "GET /api/v1/session", "/api/v1/session", {"Cookie": f"session={cookie}"}),
            ("note", "GET /api/v1/notes/{id}", f"/api/v1/notes/{note_id}", {}),
        ]:
            run.log(f"profiling {label}")
            raw = artefacts / f"{name}.txt"
            load = profile_endpoint(opts, py_spy, server, path, headers, raw, args.seconds)
            flamegraph(py_spy, server, opts, path, headers, artefacts / f"{name}.svg")
            rows.append((label, load, summarise(raw)))
    report = render(rows, args.seconds)
    print(report)
    args.output.write_text(report)
    run.log(f"wrote {args.output} and {artefacts}/")


if __name__ == "__main__":
    main()
