"""Where does the generated web process spend its time under load? A sampling profile per endpoint.

    .venv/bin/python bench/profile.py            # about 1.5 minutes; writes bench/PROFILE.md
    .venv/bin/python bench/profile.py --traced   # the same with tracing on -> PROFILE-traced.md

Renders and installs the template exactly as run.py does, starts one `web` process, and for each
of /livez, GET /api/v1/session and GET /api/v1/notes/{id}: puts it under wrk load and records it
with py-spy (installed into a scratch venv, not into the project). Each sample is put in the
bucket of the innermost frame that matches one of BUCKETS below, so the table reads as "share of
the process's busy time", adding up to 100 %. The raw stacks and a flame graph per endpoint are
kept next to the report for a closer look.

py-spy samples at 100 Hz with --native, so that time in C shows too: above all the cyclic
garbage collector, which otherwise hides inside whichever Python line allocated last. It
samples only the thread holding the GIL (--gil): with tracing on, the span exporter's thread
and the event loop take turns at it, and a thread waiting for its turn spends no CPU though its
stack would still be sampled. Sampling pauses the process for a moment each time; at 100 Hz
with --native that costs this server a third of its throughput or more, but where its CPU goes
stays the same. (--nonblocking avoids the pause but reads stacks while they change, and puts
time on lines that did not spend it.)
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
EXPORT = "tracing: OTLP export thread (encode, serialise, HTTP post)"
# Everything the span exporter's thread does is export, whatever its innermost frame.
EXPORT_THREAD = re.compile(r"BatchProcessor\.worker \(")
BUCKETS: list[tuple[str, str]] = [
    # With --traced: what tracing adds, split by the part of OpenTelemetry that spends it.
    (EXPORT, r"opentelemetry/(exporter|sdk/trace/export)|google/protobuf|_message\.abi3"),
    ("tracing: redis-py instrumentation", r"opentelemetry/instrumentation/redis"),
    ("tracing: the server span's layer (web/server_span.py)", r"acme_notes/web/server_span"),
    ("tracing: log lines' trace ids, instrumentation gates", r"acme_notes/core/tracing"),
    ("tracing: span start/end, ids, attributes, context", r"opentelemetry/|/random\.py"),
    # Native frames (py-spy --native): the collector runs inside whichever allocation set it
    # off, so without this bucket its time would be smeared over random Python lines.
    ("cyclic garbage collector (gc)", r"gc_collect|collect_with_callback"),
    (
        "log lines (access line included): JSON render + write",
        r"structlog/|/logging/__init__|acme_notes/core/logging",
    ),
    ("metrics: prometheus_client", r"prometheus_client/|acme_notes/core/metrics"),
    ("rate limiting", r"acme_notes/web/ratelimit"),
    ("sync code sent to the thread pool", r"run_in_threadpool|to_thread|run_sync_in_worker"),
    ("psycopg: query send/receive, connect, rollback", r"psycopg/"),
    ("SQLAlchemy: session, ORM, pool, pre-ping", r"sqlalchemy/"),
    ("redis-py client", r"site-packages/redis/"),
    (
        "own middlewares: request id, deadline, observe, CSRF, body limit",
        r"acme_notes/web/(request_id|deadline|observe|csrf|body_limit|protocol)|/uuid\.py|"
        r"asyncio/timeouts",
    ),
    (
        "sessions: cookie check, HMAC, JSON",
        r"acme_notes/(core/sessions|web/cookie)|/hmac\.py|/base64\.py",
    ),
    (
        "FastAPI routing: include_router matching",
        r"_IncludedRouter|_EffectiveRouteContext|\bmatches \(|Router\.(app|handle|__call__)",
    ),
    ("FastAPI dependency resolution", r"solve_dependencies|fastapi/dependencies/"),
    ("response model: pydantic validate + serialize", r"pydantic|serialize_response|encoders"),
    ("route handler and its dependencies (acme_notes/web)", r"acme_notes/"),
    ("uvicorn + httptools: parse, socket write", r"uvicorn/|httptools"),
    ("starlette / FastAPI request plumbing", r"starlette/|fastapi/"),
    ("asyncio event loop", r"asyncio/|uvloop"),
]
# A thread waiting for work is idle, though py-spy may still sample it: the thread pools'
# workers, and the span exporter's thread between batches.
IDLE = re.compile(
    r"^(\w+\.)?(wait|get) \(.*(threading|queue)\.py|^_worker \(.*concurrent/futures/thread\.py"
)
_COMPILED = [(name, re.compile(pattern)) for name, pattern in BUCKETS]
PY_SPY_RATE = 100
PY_SPY_MODE = ["--native", "--gil"]  # or ["--nonblocking"], with the option of that name


def bucket(stack: list[str]) -> str:
    if any(EXPORT_THREAD.match(frame) for frame in stack):
        return EXPORT
    for frame in reversed(stack):  # innermost first
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def is_idle(stack: list[str]) -> bool:
    python_frames = [frame for frame in stack if ".py:" in frame]
    return bool(python_frames) and bool(IDLE.match(python_frames[-1]))


def summarise(raw: Path) -> Counter[str]:
    """py-spy's raw output: one "frame;frame;...;frame COUNT" line per distinct stack."""
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and not is_idle(frames):
            totals[bucket(frames)] += int(count)
    return totals


def install_py_spy(workdir: Path) -> Path:
    venv = workdir / "py-spy-venv"
    subprocess.run(["uv", "venv", "-q", str(venv)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(venv), "py-spy"], check=True)
    return venv / "bin" / "py-spy"


def record(py_spy: Path, server: run.Server, seconds: int, out: Path, *fmt: str) -> None:
    """py-spy on the server for `seconds`: a flame graph, or with `-f raw` the raw stacks."""
    target = ["--pid", str(server.pid), "-r", str(PY_SPY_RATE), "-d", str(seconds)]
    options = ["--full-filenames", *PY_SPY_MODE, *fmt, "-o", str(out)]
    subprocess.run(
        [str(py_spy), "record", *target, *options],
        check=True,
        capture_output=True,
    )


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
    record(py_spy, server, seconds, out, "-f", "raw")
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
    record(py_spy, server, 4, out)
    load.join()


def render(rows: list[tuple[str, run.LoadResult, Counter[str]]], seconds: int, traced: bool) -> str:
    mode = " ".join(PY_SPY_MODE)
    title = "# Where the generated web process spends its time"
    if traced:
        title += (
            ", tracing on\n\nAlways-on sampling, OTLP/HTTP export to a local receiver; the "
            "buckets named `tracing:` are what tracing adds."
        )
    lines = [
        title,
        "",
        f"`bench/profile.py`: py-spy `{mode}` at {PY_SPY_RATE} Hz for {seconds} s per endpoint "
        "under `wrk -t1 -c32`. Each sample is put in the bucket of its innermost matching frame "
        "(BUCKETS in the script); shares are of the samples where the process was busy, and "
        "µs per request is the share times the CPU per request measured during the profile. "
        "Sampling slows the server (see req/s), so read the shares, not the rates.",
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
    parser.add_argument(
        "--output", type=Path, help="default: bench/PROFILE.md, with --traced PROFILE-traced.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the rendered project")
    parser.add_argument(
        "--traced",
        action="store_true",
        help="profile the web with tracing on (always-on sampling into a local OTLP receiver)",
    )
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="sample without pausing the process (and without native frames)",
    )
    args = parser.parse_args()
    if args.output is None:
        args.output = run.BENCH_DIR / ("PROFILE-traced.md" if args.traced else "PROFILE.md")
    if args.nonblocking:
        PY_SPY_MODE[:] = ["--nonblocking"]  # py-spy cannot read native stacks without a pause
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
        env = {}
        if args.traced:
            receiver = run.Receiver()
            cleanup.callback(receiver.close)
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_SAMPLER": "always_on"}
        web = cleanup.enter_context(
            run.running(run.start(project, run.web_args(), "web.log", **env))
        )
        run.wait_ready(web, port)
        cookie = run.create_session(port)
        note_id = run.post_notes(port, cookie, 1)[0]
        server = run.Server(port, web.pid)
        for name, label, path, headers in [
            ("livez", "GET /livez", "/livez", {}),
            ("session", "GET /api/v1/session", "/api/v1/session", {"Cookie": f"session={cookie}"}),
            (
                "note",
                "GET /api/v1/notes/{id}",
                f"/api/v1/notes/{note_id}",
                {"Cookie": f"session={cookie}"},
            ),
        ]:
            run.log(f"profiling {label}")
            name = f"traced-{name}" if args.traced else name
            raw = artefacts / f"{name}.txt"
            load = profile_endpoint(opts, py_spy, server, path, headers, raw, args.seconds)
            flamegraph(py_spy, server, opts, path, headers, artefacts / f"{name}.svg")
            rows.append((label, load, summarise(raw)))
    report = render(rows, args.seconds, args.traced)
    print(report)
    args.output.write_text(report)
    run.log(f"wrote {args.output} and {artefacts}/")


if __name__ == "__main__":
    main()
