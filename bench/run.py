"""Benchmark the service this template generates against bare FastAPI doing the same work.

    .venv/bin/python bench/run.py            # about 3 minutes on 2 cores; writes bench/RESULTS.md

One run, end to end: render the template into a temporary directory, install it from its locks,
migrate a fresh database, then measure
  - three endpoint pairs under wrk load (generated vs bench/baseline.py, same uvicorn settings);
  - web RSS after that load;
  - cold start (exec to the first 200 from /readyz) and idle SIGTERM-to-exit, median of 5;
  - worker throughput: N notes queued over HTTP, then one `worker` process drains them.
Results are printed as Markdown and written to bench/RESULTS.md, with a pass/fail per target.

Needs: wrk (apt-get install -y wrk), uv, PostgreSQL on 127.0.0.1:5432 (user postgres, trust
auth) with createdb/dropdb/psql, Redis on 127.0.0.1:6379. The script itself uses only the
standard library; everything that imports the service's dependencies runs in the rendered
project's own venv. All traffic goes to 127.0.0.1, and every wrk run is bounded in time.
"""

import argparse
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = BENCH_DIR.parent
COOKIECUTTER = TEMPLATE_DIR / ".venv" / "bin" / "cookiecutter"
WRK_SCRIPT = BENCH_DIR / "report.lua"
BASELINE = BENCH_DIR / "baseline.py"

PROJECT_SLUG = "acme-notes"  # what cookiecutter.json's defaults render to
PACKAGE = "acme_notes"
PG_ARGS = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
PG_URL = "postgresql://postgres@127.0.0.1:5432"
REDIS_BASE_URL = "redis://127.0.0.1:6379"

# Targets: generated/bare throughput ratios, and absolute process limits.
TARGET_RATIO = {"livez": 0.9, "session": 0.7, "note": 0.7}
TARGET_START_S = 1.0
TARGET_EXIT_S = 0.5
TARGET_RSS_MB = 90.0


@dataclass(frozen=True)
class Options:
    threads: int
    connections: int
    duration_s: int
    warmup_s: int
    runs: int  # repetitions of the cold-start / idle-exit measurement
    notes: int  # notes queued for the worker measurement
    redis_db: int
    keep: bool
    output: Path


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # One wrk thread is plenty for a one-process Python server and leaves the second core of a
    # 2-core machine to the server, PostgreSQL and Redis rather than to the load generator.
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds first (3)")
    parser.add_argument("--runs", type=int, default=5, help="cold start / exit repetitions (5)")
    parser.add_argument("--notes", type=int, default=500, help="notes for the worker (500)")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis logical DB, flushed (14)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered project")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args()
    return Options(
        threads=args.threads,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        runs=args.runs,
        notes=args.notes,
        redis_db=args.redis_db,
        keep=args.keep,
        output=args.output,
    )


def log(message: str) -> None:
    # Progress goes to stderr so that stdout carries only the final Markdown.
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- The rendered project and its backing services -------------------------------------------


@dataclass(frozen=True)
class Project:
    root: Path  # <tmp>/acme-notes
    python: Path  # its venv's interpreter: runs the service, the baseline and helpers
    env: dict[str, str]  # the twelve-factor config every process gets
    logs: Path


def render_and_install(workdir: Path) -> Path:
    """Render with the template's defaults and install exactly what the locks pin.

    Bytecode is compiled at install time, as a container image build should do: without .pyc
    files (or with PYTHONDONTWRITEBYTECODE set, as in many CI and sandbox shells) every start
    compiles all of FastAPI, SQLAlchemy and redis-py from source, which here more than doubles
    the cold start and would hide what the template's own code costs.
    """
    subprocess.run(
        [str(COOKIECUTTER), "--no-input", str(TEMPLATE_DIR), "-o", str(workdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    root = workdir / PROJECT_SLUG
    for step in (
        ["uv", "venv", "-q", ".venv", "-p", "3.11"],
        ["uv", "pip", "sync", "-q", "--compile-bytecode", "--python", ".venv",
         "requirements-dev.lock"],
        ["uv", "pip", "install", "-q", "--python", ".venv", "--no-deps", "-e", "."],
        # An editable install leaves the package's own modules uncompiled: compile them too.
        [".venv/bin/python", "-m", "compileall", "-q", "src"],
    ):
        subprocess.run(step, cwd=root, check=True)
    return root


def service_env(database: str, port: int, redis_db: int) -> dict[str, str]:
    env = dict(os.environ)
    # The template's tooling venv must not leak into the service's processes.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=f"{PG_URL}/{database}",
        REDIS_URL=f"{REDIS_BASE_URL}/{redis_db}",
        SECRET_KEY=secrets.token_urlsafe(36),  # 48 characters
        SESSION_COOKIE_SECURE="false",  # plain HTTP on loopback
        PORT=str(port),
        LOG_LEVEL="INFO",
    )
    return env


def flush_redis(project: Project) -> None:
    """Empty our logical DB: no stale Celery messages or sessions from an earlier run."""
    code = "import os, redis; redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()"
    subprocess.run([str(project.python), "-c", code], env=project.env, check=True)


def psql(database: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", *PG_ARGS, "-d", database, "-tAX", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def package_versions(project: Project) -> dict[str, str]:
    names = ["fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg", "redis", "celery"]
    code = (
        "import json, sys, importlib.metadata as m;"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(project.python), "-c", code, *names], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(out.stdout)
    versions["python"] = subprocess.run(
        [str(project.python), "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return versions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Processes ---------------------------------------------------------------------------------


def start(project: Project, args: list[str], log_name: str, **env: str) -> subprocess.Popen[bytes]:
    """Start a process with its output going to a file.

    The web process writes one JSON line per request: a pipe nobody reads would fill up and
    block the server mid-benchmark, so output always goes to a file.
    """
    with open(project.logs / log_name, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [str(project.python), *args],
            cwd=project.root,
            env={**project.env, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def web_args() -> list[str]:
    return ["-m", PACKAGE, "web"]


def baseline_args() -> list[str]:
    return [str(BASELINE)]


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop(proc)


def request(
    port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """One request on a fresh connection that is closed at once (nothing left open at SIGTERM)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Connection": "close", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 30) -> float:
    """Seconds until GET /readyz answers 200; polls every 5 ms so the poll adds little."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            if request(port, "GET", "/readyz").status == 200:
                return time.perf_counter() - started
        except OSError:  # not listening yet
            pass
        time.sleep(0.005)
    raise TimeoutError(f"not ready on port {port} after {timeout} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- Load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # errors plus non-2xx/3xx responses: a run with any is not a valid measurement


def wrk(opts: Options, url: str, headers: dict[str, str], seconds: int) -> LoadResult:
    cmd = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{seconds}s"]
    cmd += ["--timeout", "5s", "-s", str(WRK_SCRIPT)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    bad = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return LoadResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        bad=bad + data["bad_status"],
    )


@dataclass(frozen=True)
class Pair:
    key: str  # index into TARGET_RATIO
    label: str
    generated_path: str
    bare_path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    generated: LoadResult
    bare: LoadResult

    @property
    def ratio(self) -> float:
        return self.generated.rps / self.bare.rps

    @property
    def passed(self) -> bool:
        valid = self.generated.bad == 0 and self.bare.bad == 0
        return valid and self.ratio >= TARGET_RATIO[self.pair.key]


def measure(opts: Options, port: int, path: str, headers: dict[str, str]) -> LoadResult:
    url = f"http://127.0.0.1:{port}{path}"
    # Warm-up: fills the connection pools, and lets CPU caches and the allocator settle.
    wrk(opts, url, headers, opts.warmup_s)
    return wrk(opts, url, headers, opts.duration_s)


def run_pairs(opts: Options, pairs: list[Pair], gen_port: int, bare_port: int) -> list[PairResult]:
    results = []
    for pair in pairs:
        log(f"load: {pair.label}")
        generated = measure(opts, gen_port, pair.generated_path, pair.headers)
        bare = measure(opts, bare_port, pair.bare_path, pair.headers)
        results.append(PairResult(pair, generated, bare))
        log(f"  generated {generated.rps:,.0f} req/s, bare {bare.rps:,.0f} req/s")
    return results


# --- Seeding -----------------------------------------------------------------------------------


def create_session(port: int) -> str:
    """Log in; return the `session` cookie value."""
    response = request(port, "POST", "/api/v1/session", {"username": "bench"})
    assert response.status == 201, response.status
    cookie = response.getheader("set-cookie") or ""
    name, _, rest = cookie.partition("=")
    assert name == "session", cookie
    return rest.split(";", 1)[0]


def post_notes(port: int, count: int) -> list[int]:
    """Create notes over HTTP on one keep-alive connection; each one enqueues notes.enrich."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ids = []
    try:
        for n in range(count):
            body = json.dumps({"title": f"note {n}", "body": "the quick brown fox " * 10})
            conn.request(
                "POST", "/api/v1/notes", body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 201, (response.status, payload)
            ids.append(json.loads(payload)["id"])
    finally:
        conn.close()
    return ids


# --- Process lifecycle: cold start and idle exit ----------------------------------------------


@dataclass(frozen=True)
class Lifecycle:
    start_s: list[float]
    exit_s: list[float]
    exit_codes: list[int]

    @property
    def start_median(self) -> float:
        return statistics.median(self.start_s)

    @property
    def exit_median(self) -> float:
        return statistics.median(self.exit_s)


def lifecycle(project: Project, args: list[str], port: int, runs: int, name: str) -> Lifecycle:
    starts, exits, codes = [], [], []
    for _ in range(runs):
        # Measured from just before exec, so interpreter start-up and imports count.
        t0 = time.perf_counter()
        proc = start(project, args, f"{name}-lifecycle.log", PORT=str(port))
        with running(proc):
            wait_ready(proc, port)
            starts.append(time.perf_counter() - t0)
            time.sleep(0.5)  # idle: no request in flight, the readiness poll's socket closed
            t1 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            codes.append(proc.wait(30))
            exits.append(time.perf_counter() - t1)
    return Lifecycle(starts, exits, codes)


# --- Worker throughput -------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerResult:
    notes: int
    concurrency: str
    wall_s: float  # worker exec -> every note enriched, start-up included
    steady_per_s: float  # between the first and the last enriched_at: the draining rate
    exit_code: int


def worker_throughput(project: Project, database: str, ids: list[int]) -> WorkerResult:
    first, last = min(ids), max(ids)
    pending_sql = (
        f"SELECT count(*) FROM notes WHERE id BETWEEN {first} AND {last} AND enriched_at IS NULL"
    )
    t0 = time.perf_counter()
    proc = start(project, ["-m", PACKAGE, "worker"], "worker.log")
    with running(proc):
        deadline = t0 + 180
        # psql costs a few ms of CPU each time: poll at 10 Hz, not faster.
        while int(psql(database, pending_sql)) > 0:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("worker stopped or timed out before draining the queue")
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        code = proc.wait(30)
    span = float(
        psql(
            database,
            "SELECT extract(epoch FROM max(enriched_at) - min(enriched_at)) FROM notes "
            f"WHERE id BETWEEN {first} AND {last}",
        )
    )
    return WorkerResult(
        notes=len(ids),
        concurrency=project.env.get("WORKER_CONCURRENCY", "2 (default)"),
        wall_s=wall,
        steady_per_s=(len(ids) - 1) / span if span > 0 else float("inf"),
        exit_code=code,
    )


# --- Report ------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} × {model}, {mem_kb / 2**20:.0f} GiB RAM, Linux {platform.release()}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def render_report(
    opts: Options,
    versions: dict[str, str],
    pairs: list[PairResult],
    rss: tuple[float, float],
    gen_life: Lifecycle,
    bare_life: Lifecycle,
    worker: WorkerResult,
    elapsed_s: float,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    stack = ", ".join(f"{k} {v}" for k, v in versions.items())
    lines = [
        "# twelve-app benchmark: generated service vs bare FastAPI",
        "",
        f"- Date: {now}; whole run {elapsed_s:.0f} s (`bench/run.py`)",
        f"- Machine: {machine()}",
        f"- Stack: {stack}",
        f"- Load: `wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s` per side "
        f"after a {opts.warmup_s} s warm-up; the two sides run one after the other, never at "
        "once. Both are one uvicorn process (uvloop, httptools, access log off, "
        "log_config=None); the generated one writes its JSON access log to a file.",
        "- Bare side: `bench/baseline.py`, same venv, same pool size (5 + 5) and psycopg "
        "settings; it reads the same Redis key and the same notes row.",
        "",
        "## Throughput and latency",
        "",
        "| Pair (generated vs bare) | Generated req/s | Bare req/s | Ratio | "
        "Generated p50 / p99 | Bare p50 / p99 | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in pairs:
        g, b = r.generated, r.bare
        invalid = "" if g.bad == b.bad == 0 else f" ({g.bad}/{b.bad} bad responses)"
        lines.append(
            f"| {r.pair.label} | {g.rps:,.0f} | {b.rps:,.0f} | {r.ratio:.2f}× | "
            f"{g.p50_ms:.1f} / {g.p99_ms:.1f} ms | {b.p50_ms:.1f} / {b.p99_ms:.1f} ms | "
            f"≥ {TARGET_RATIO[r.pair.key]}× | {verdict(r.passed)}{invalid} |"
        )
    exit_ok = gen_life.exit_median < TARGET_EXIT_S and set(gen_life.exit_codes) == {0}
    lines += [
        "",
        "## Processes",
        "",
        "| Measure | Generated | Bare | Target | Result |",
        "|---|---:|---:|---|---|",
        f"| Cold start: exec → first 200 from /readyz (median of {opts.runs}) | "
        f"{gen_life.start_median:.2f} s | {bare_life.start_median:.2f} s | < {TARGET_START_S} s | "
        f"{verdict(gen_life.start_median < TARGET_START_S)} |",
        f"| Idle SIGTERM → exit (median of {opts.runs}); exit codes | "
        f"{gen_life.exit_median * 1000:.0f} ms; {codes(gen_life)} | "
        f"{bare_life.exit_median * 1000:.0f} ms; {codes(bare_life)} | "
        f"< {TARGET_EXIT_S * 1000:.0f} ms, 0 | {verdict(exit_ok)} |",
        f"| Web RSS after the load (VmRSS) | {rss[0]:.0f} MB | {rss[1]:.0f} MB | "
        f"< {TARGET_RSS_MB:.0f} MB | {verdict(rss[0] < TARGET_RSS_MB)} |",
        f"| Worker: {worker.notes} queued notes, one `worker` (concurrency "
        f"{worker.concurrency}) | {worker.steady_per_s:.0f} notes/s steady; all done "
        f"{worker.wall_s:.1f} s after exec; exit {worker.exit_code} | — | (none) | — |",
        "",
        f"Cold starts (s): generated {fmt(gen_life.start_s)}; bare {fmt(bare_life.start_s)}.  ",
        f"Idle exits (ms): generated {fmt([s * 1000 for s in gen_life.exit_s], 0)}; "
        f"bare {fmt([s * 1000 for s in bare_life.exit_s], 0)}.",
        "",
    ]
    return "\n".join(lines)


def codes(life: Lifecycle) -> str:
    return "all 0" if set(life.exit_codes) == {0} else ", ".join(map(str, life.exit_codes))


def fmt(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


# --- The run -----------------------------------------------------------------------------------


def main() -> None:
    opts = parse_options()
    began = time.perf_counter()
    database = f"bench_{os.getpid()}"
    gen_port, bare_port = free_port(), free_port()
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="twelve-bench-"))
        if not opts.keep:
            cleanup.callback(subprocess.run, ["rm", "-rf", str(workdir)], check=False)
        log(f"rendering and installing into {workdir}")
        root = render_and_install(workdir)
        logs = workdir / "logs"
        logs.mkdir()
        project = Project(
            root=root,
            python=root / ".venv" / "bin" / "python",
            env=service_env(database, gen_port, opts.redis_db),
            logs=logs,
        )
        subprocess.run(["createdb", *PG_ARGS, database], check=True)
        cleanup.callback(subprocess.run, ["dropdb", *PG_ARGS, "--if-exists", database], check=False)
        flush_redis(project)
        cleanup.callback(flush_redis, project)
        versions = package_versions(project)

        log("release: migrations")
        subprocess.run([str(project.python), "-m", PACKAGE, "release"], env=project.env,
                       cwd=root, check=True, stdout=subprocess.DEVNULL)

        log("starting the generated web process")
        web = cleanup.enter_context(running(start(project, web_args(), "web.log")))
        wait_ready(web, gen_port)
        cookie = create_session(gen_port)
        note_id = post_notes(gen_port, 1)[0]
        # The baseline GETs the very key the generated service GETEXes: same value, same size.
        session_key = "session:" + cookie.split(".", 1)[0]
        bare = cleanup.enter_context(
            running(start(project, baseline_args(), "baseline.log",
                          PORT=str(bare_port), BENCH_SESSION_KEY=session_key))
        )
        wait_ready(bare, bare_port)

        pairs = [
            Pair("livez", "GET /livez vs constant", "/livez", "/livez"),
            Pair("session", "GET /api/v1/session vs one Redis GET", "/api/v1/session",
                 "/session", {"Cookie": f"session={cookie}"}),
            Pair("note", "GET /api/v1/notes/{id} vs one SELECT", f"/api/v1/notes/{note_id}",
                 f"/notes/{note_id}"),
        ]
        pair_results = run_pairs(opts, pairs, gen_port, bare_port)
        rss = (rss_mb(web.pid), rss_mb(bare.pid))
        log(f"RSS after load: generated {rss[0]:.0f} MB, bare {rss[1]:.0f} MB")

        log(f"queueing {opts.notes} notes over HTTP (no worker running yet)")
        ids = post_notes(gen_port, opts.notes)
        stop(web)
        stop(bare)

        log("worker: draining the queue")
        worker = worker_throughput(project, database, ids)
        log(f"  {worker.steady_per_s:.0f} notes/s, all done after {worker.wall_s:.1f} s")

        log(f"cold start and idle exit, {opts.runs} runs each side")
        gen_life = lifecycle(project, web_args(), gen_port, opts.runs, "web")
        bare_life = lifecycle(project, baseline_args(), bare_port, opts.runs, "baseline")

        report = render_report(
            opts, versions, pair_results, rss, gen_life, bare_life, worker,
            time.perf_counter() - began,
        )
    print(report)
    opts.output.write_text(report)
    log(f"wrote {opts.output}")


if __name__ == "__main__":
    main()
