"""Benchmark the service this template generates against bare FastAPI doing the same work.

    .venv/bin/python bench/run.py            # about 2.5 minutes on 2 cores; writes bench/RESULTS.md
    .venv/bin/python bench/run.py --only tracing   # the tracing rows alone, printed, not written
    .venv/bin/python bench/run.py --only worker    # one phase, its figures on stderr; no report

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
import collections
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
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = BENCH_DIR.parent
COOKIECUTTER = TEMPLATE_DIR / ".venv" / "bin" / "cookiecutter"
REDIS_DB_SCRIPT = str(TEMPLATE_DIR / "scripts" / "redis_db.py")
WRK_SCRIPT = BENCH_DIR / "report.lua"
BASELINE = BENCH_DIR / "baseline.py"
BARE_WORKER = BENCH_DIR / "bare_worker.py"

PROJECT_SLUG = "acme-notes"  # what cookiecutter.json's defaults render to
PACKAGE = "acme_notes"
PG_ARGS = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
PG_URL = "postgresql://postgres@127.0.0.1:5432"
REDIS_BASE_URL = "redis://127.0.0.1:6379"

# Targets. Endpoint pairs: bare / generated server CPU per request (pairs not named: none).
TARGET_RATIO = {"livez": 1.0, "session": 0.85, "note": 0.85}
# Tracing: what tracing on adds to the CPU of a request, in µs: a probe (no span), a request
# not sampled; an always-on session read may add the SDK's own floor (span_floor.py) plus this.
TARGET_ADDED_US = {"traced_livez": 10.0, "unsampled_session": 30.0}
TARGET_OVER_FLOOR_US = 120.0
# Processes: against the bare app's figures; the worker against bench/bare_worker.py.
TARGET_START_OVER_BARE_S = 0.2
TARGET_EXIT_S = 0.5
TARGET_RSS_OVER_BARE_MB = 15.0
TARGET_WORKER_RATIO = 0.8


@dataclass(frozen=True)
class Options:
    threads: int
    connections: int
    duration_s: int
    warmup_s: int
    rounds: int  # alternating generated/bare wrk runs per pair; the best of each side counts
    runs: int  # repetitions of the cold-start / idle-exit measurement
    notes: int  # notes queued for the worker measurement
    redis_db: int
    keep: bool
    output: Path
    only: str | None = None  # one phase of PHASES alone, its figures printed; no report


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # One wrk thread is plenty for a one-process Python server and leaves the second core of a
    # 2-core machine to the server, PostgreSQL and Redis rather than to the load generator.
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run (6)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first (2)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per side and pair (3)")
    parser.add_argument("--runs", type=int, default=5, help="cold start / exit repetitions (5)")
    parser.add_argument("--notes", type=int, default=500, help="notes for the worker (500)")
    parser.add_argument(
        "--redis-db", type=int, default=14, help="Redis logical DB to claim and flush (14)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the rendered project")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--only", choices=sorted(PHASES), help="run one phase, write no report")
    args = parser.parse_args()
    return Options(
        threads=args.threads,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rounds=args.rounds,
        runs=args.runs,
        notes=args.notes,
        redis_db=args.redis_db,
        keep=args.keep,
        output=args.output,
        only=args.only,
    )


def log(message: str) -> None:
    # Progress goes to stderr so that stdout carries only the final Markdown.
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- The rendered project and its backing services -------------------------------------------


@dataclass(frozen=True)
class Project:
    root: Path  # <tmp>/acme-notes
    python: Path  # its venv's interpreter: runs the service, the baseline and helpers
    database: str
    env: dict[str, str]  # the twelve-factor config every process gets
    logs: Path


def render_and_install(workdir: Path) -> Path:
    """Render with the template's defaults and install exactly what production's lock pins.

    Not the dev lock: its tools change what the service imports (structlog renders with rich
    whenever rich is installed), so start-up and memory would not be production's.

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
        [
            "uv",
            "pip",
            "sync",
            "-q",
            "--compile-bytecode",
            "--python",
            ".venv",
            "requirements.lock",  # what production runs (the Dockerfile installs it too)
        ],
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
        # Writes are rate limited per client address (60/minute by default); queueing the
        # worker's notes from one address would hit that. Reads, the measured part, are not.
        RATE_LIMIT="100000/minute",
        # The login burst is 20 clients on one account from one address: the throttle counts an
        # attempt until its password is checked, so with its defaults most would get a 429 and
        # the burst would measure the throttle, not the hashing.
        LOGIN_FAILURES_PER_ACCOUNT="100000/minute",
        LOGIN_FAILURES_PER_ADDRESS="100000/minute",
    )
    return env


def venv_python(python: Path, *args: str) -> str:
    """Run the project's interpreter (it has redis-py; ours has not); return its output."""
    done = subprocess.run([str(python), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def claim_redis_db(python: Path, preferred: int) -> int:
    """A Redis logical DB of our own, emptied (scripts/redis_db.py, as the template tests do)."""
    return int(venv_python(python, REDIS_DB_SCRIPT, "claim", REDIS_BASE_URL, str(preferred)))


def release_redis_db(python: Path, db: int) -> None:
    venv_python(python, REDIS_DB_SCRIPT, "release", REDIS_BASE_URL, str(db))


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
        "import json, sys, platform, importlib.metadata as m;"
        "v = {n: m.version(n) for n in sys.argv[1:]};"
        "v['python'] = platform.python_version();"
        "print(json.dumps(v))"
    )
    versions: dict[str, str] = json.loads(venv_python(project.python, "-c", code, *names))
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
class Server:
    port: int
    pid: int


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time (user + system) per request
    bad: int  # errors plus non-2xx/3xx responses: a run with any is not a valid measurement


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_ticks(pid: int) -> list[int]:
    """utime, stime, cutime, cstime: fields 14 to 17 of /proc/<pid>/stat, in clock ticks."""
    # The command name (field 2) may contain spaces; the fields after its ")" do not.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(value) for value in fields[11:15]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    utime, stime, _, _ = _stat_ticks(pid)
    return (utime + stime) / CLOCK_TICKS


def worker_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of a worker's main process, and of its pool: the processes running now and
    those it replaced (ended and waited for). What draining costs, whatever the load did to the
    rate."""
    utime, stime, cutime, cstime = _stat_ticks(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    pool = sum(cpu_seconds(int(child)) for child in children)
    return (utime + stime) / CLOCK_TICKS, pool + (cutime + cstime) / CLOCK_TICKS


def wrk(
    opts: Options, server: Server, path: str, headers: dict[str, str], seconds: int
) -> LoadResult:
    """One wrk run. Besides req/s, the server's CPU time per request: on a shared machine,
    outside load lowers req/s a lot but CPU per request only a little, so it is the steadier
    measure of what the code costs."""
    cmd = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{seconds}s"]
    cmd += ["--timeout", "5s", "-s", str(WRK_SCRIPT)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cpu_before = cpu_seconds(server.pid)
    url = f"http://127.0.0.1:{server.port}{path}"
    done = subprocess.run([*cmd, url], capture_output=True, text=True)
    if done.returncode != 0:
        # Typically "unable to connect": the server died (or something else stopped it).
        raise RuntimeError(f"wrk failed on {url}: {(done.stderr or done.stdout).strip()}")
    out = done.stdout
    cpu = cpu_seconds(server.pid) - cpu_before
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    bad = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return LoadResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_us=cpu / max(data["requests"], 1) * 1e6,
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
    generated_runs: list[LoadResult]
    bare_runs: list[LoadResult]

    # The best run of each side stands for it. On a shared 2-core machine, outside work can only
    # slow a run down, never speed it up, so the fastest run is the least disturbed one.
    @property
    def generated(self) -> LoadResult:
        return max(self.generated_runs, key=lambda r: r.rps)

    @property
    def bare(self) -> LoadResult:
        return max(self.bare_runs, key=lambda r: r.rps)

    # CPU per request barely moves with outside load: the median of the runs is fine.
    @property
    def generated_cpu_us(self) -> float:
        return statistics.median(r.cpu_us for r in self.generated_runs)

    @property
    def bare_cpu_us(self) -> float:
        return statistics.median(r.cpu_us for r in self.bare_runs)

    @property
    def rps_ratio(self) -> float:
        return self.generated.rps / self.bare.rps

    @property
    def ratio(self) -> float:
        """What the targets compare: bare CPU per request / generated CPU per request."""
        return self.bare_cpu_us / self.generated_cpu_us

    @property
    def added_us(self) -> float:
        """Generated minus bare CPU per request: for tracing, what tracing on adds."""
        return self.generated_cpu_us - self.bare_cpu_us

    @property
    def bad(self) -> int:
        return sum(r.bad for r in [*self.generated_runs, *self.bare_runs])

    @property
    def target(self) -> str:
        return f"≥ {TARGET_RATIO[self.pair.key]}x" if self.pair.key in TARGET_RATIO else "(none)"

    @property
    def result(self) -> str:
        if self.bad:
            return f"**INVALID** ({self.bad} errors or non-2xx)"
        if self.pair.key not in TARGET_RATIO:
            return "—"
        return verdict(self.ratio >= TARGET_RATIO[self.pair.key])

    def added_result(self, limit_us: float | None) -> str:
        if self.bad:
            return f"**INVALID** ({self.bad} errors or non-2xx)"
        return "—" if limit_us is None else verdict(self.added_us <= limit_us)


def run_pair(opts: Options, pair: Pair, gen: Server, bare: Server) -> PairResult:
    # Warm-up: fills the connection pools and lets caches and the allocator settle.
    wrk(opts, gen, pair.generated_path, pair.headers, opts.warmup_s)
    wrk(opts, bare, pair.bare_path, pair.headers, opts.warmup_s)
    generated, bare_runs = [], []
    # Alternate the sides, so a burst of outside load hurts both rather than one.
    for _ in range(opts.rounds):
        generated.append(wrk(opts, gen, pair.generated_path, pair.headers, opts.duration_s))
        bare_runs.append(wrk(opts, bare, pair.bare_path, pair.headers, opts.duration_s))
    return PairResult(pair, generated, bare_runs)


def run_pairs(opts: Options, pairs: list[Pair], gen: Server, bare: Server) -> list[PairResult]:
    results = []
    for pair in pairs:
        log(f"load: {pair.label}")
        result = run_pair(opts, pair, gen, bare)
        results.append(result)
        log(f"  generated {rates(result.generated_runs)}; bare {rates(result.bare_runs)} req/s")
        log(
            f"  CPU per request: generated {result.generated_cpu_us:.0f} µs, "
            f"bare {result.bare_cpu_us:.0f} µs"
        )
    return results


def rates(runs: list[LoadResult]) -> str:
    return ", ".join(f"{r.rps:,.0f}" for r in runs)


# --- Seeding -----------------------------------------------------------------------------------


BENCH_ACCOUNT = {"email": "bench@example.com", "password": "a bench pass phrase of some length"}


def create_session(port: int) -> str:
    """Sign up and log in; return the `session` cookie value."""
    response = request(port, "POST", "/api/v1/users", BENCH_ACCOUNT)
    assert response.status == 201, response.status
    response = request(port, "POST", "/api/v1/session", BENCH_ACCOUNT)
    assert response.status == 201, response.status
    cookie = response.getheader("set-cookie") or ""
    name, _, rest = cookie.partition("=")
    assert name == "session", cookie
    return rest.split(";", 1)[0]


def post_notes(port: int, cookie: str, count: int) -> list[int]:
    """Create notes over HTTP on one keep-alive connection; each one enqueues notes.enrich."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ids = []
    try:
        for n in range(count):
            body = json.dumps({"title": f"note {n}", "body": "the quick brown fox " * 10})
            conn.request(
                "POST",
                "/api/v1/notes",
                body=body,
                headers={"Content-Type": "application/json", "Cookie": f"session={cookie}"},
            )
            response = conn.getresponse()
            payload = response.read()
            assert response.status == 201, (response.status, payload)
            ids.append(json.loads(payload)["id"])
    finally:
        conn.close()
    return ids


# --- Logins: argon2id throughput, and what a burst does to everything else ----------------------


@dataclass(frozen=True)
class LoginBurst:
    clients: int
    seconds: float
    logins: int
    livez_ms: list[float]  # latency of sequential GET /livez probes during the burst
    others: dict[int, int]  # answers other than 201, by status: counted, not in `logins`

    @property
    def per_s(self) -> float:
        return self.logins / self.seconds

    @property
    def livez_p99_ms(self) -> float:
        return statistics.quantiles(self.livez_ms, n=100)[98]


def other_answers(others: dict[int, int]) -> str:
    """`; also 3 x 503`: the burst's answers other than 201, if any."""
    listed = ", ".join(f"{n} x {status}" for status, n in sorted(others.items()))
    return f"; also {listed}" if listed else ""


def login_burst(port: int, clients: int = 20, seconds: float = 5.0) -> LoginBurst:
    """`clients` threads log in back to back for `seconds`, while one more probes /livez."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients
    others: collections.Counter[int] = collections.Counter()
    probes: list[float] = []

    def log_in_repeatedly(n: int) -> None:
        while time.perf_counter() < stop_at:
            status = request(port, "POST", "/api/v1/session", BENCH_ACCOUNT).status
            if status == 201:
                counts[n] += 1
            else:
                others[status] += 1

    def probe() -> None:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            assert request(port, "GET", "/livez").status == 200
            probes.append((time.perf_counter() - began) * 1000)
            time.sleep(0.005)

    threads = [threading.Thread(target=log_in_repeatedly, args=(n,)) for n in range(clients)]
    threads.append(threading.Thread(target=probe))
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoginBurst(clients, time.perf_counter() - began, sum(counts), probes, dict(others))


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
    main_cpu_us: float  # CPU per note of the main process (the consumer), start-up left out
    pool_cpu_us: float  # and of the pool processes, which run the tasks


def drain(
    project: Project, ids: list[int], args: list[str], log_name: str, **env: str
) -> WorkerResult:
    """Start a worker on queued notes, wait until every one is enriched, stop it (SIGTERM)."""
    # Integers from our own API responses, so formatting them into SQL is safe.
    first, last = int(min(ids)), int(max(ids))
    ours = f"id BETWEEN {first} AND {last}"
    pending_sql = f"SELECT count(*) FROM notes WHERE {ours} AND enriched_at IS NULL"  # noqa: S608
    t0 = time.perf_counter()
    proc = start(project, args, log_name, **env)
    with running(proc):
        deadline = t0 + 180
        # CPU is counted from the first poll that finds notes done (start-up left out), over
        # the notes still pending then; from exec, if the first poll finds them all done.
        first_pending, first_cpu = len(ids), (0.0, 0.0)
        # psql costs a few ms of CPU each time: poll at 10 Hz, not faster.
        while (pending := int(psql(project.database, pending_sql))) > 0:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{log_name}: worker stopped or timed out before draining")
            if first_pending == len(ids) and pending < len(ids):
                first_pending, first_cpu = pending, worker_cpu_seconds(proc.pid)
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        main_cpu, pool_cpu = worker_cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        code = proc.wait(30)
    elapsed = "extract(epoch FROM max(enriched_at) - min(enriched_at))"
    span_sql = f"SELECT {elapsed} FROM notes WHERE {ours}"  # noqa: S608
    span = float(psql(project.database, span_sql))
    return WorkerResult(
        notes=len(ids),
        concurrency=project.env.get("WORKER_CONCURRENCY", "2 (default)"),
        wall_s=wall,
        steady_per_s=(len(ids) - 1) / span if span > 0 else float("inf"),
        exit_code=code,
        main_cpu_us=(main_cpu - first_cpu[0]) / first_pending * 1e6,
        pool_cpu_us=(pool_cpu - first_cpu[1]) / first_pending * 1e6,
    )


def worker_throughput(
    project: Project, ids: list[int], rounds: int
) -> tuple[WorkerResult, WorkerResult]:
    """The generated worker against bench/bare_worker.py on the same notes, alternating, each
    round on the notes made unenriched again; the best round of each side stands for it.

    The first generated round drains what was queued over HTTP; later rounds queue one
    `notes.enrich` message per note themselves, the generated side through its own Celery app
    (its queue, its message stamping), the bare side on a queue of its own.
    """
    first, last = int(min(ids)), int(max(ids))
    cleared = "UPDATE notes SET word_count = NULL, enriched_at = NULL"
    reset = f"{cleared} WHERE id BETWEEN {first} AND {last}"
    bare_env = {"BENCH_QUEUE": "bench-bare"}
    send_generated = (
        f"import sys; from {PACKAGE}.core.settings import load_settings;"
        f"from {PACKAGE}.core.broker import create_celery;"
        "app = create_celery(load_settings());"
        "[app.send_task('notes.enrich', args=[int(i)]) for i in sys.argv[1:]]"
    )
    generated: list[WorkerResult] = []
    bare: list[WorkerResult] = []
    for n in range(rounds):
        if n > 0:
            psql(project.database, reset)
            subprocess.run(
                [str(project.python), "-c", send_generated, *map(str, ids)],
                cwd=project.root,
                env=project.env,
                check=True,
                capture_output=True,
            )
        generated.append(drain(project, ids, ["-m", PACKAGE, "worker"], "worker.log"))
        psql(project.database, reset)
        subprocess.run(
            [str(project.python), str(BARE_WORKER), "enqueue", *map(str, ids)],
            cwd=project.root,
            env={**project.env, **bare_env},
            check=True,
            capture_output=True,
        )
        bare.append(drain(project, ids, [str(BARE_WORKER)], "bare-worker.log", **bare_env))
        log(f"  round {n + 1}: generated {worker_figures(generated[-1])}")
        log(f"           bare {worker_figures(bare[-1])}")
    return (
        max(generated, key=lambda r: r.steady_per_s),
        max(bare, key=lambda r: r.steady_per_s),
    )


def cpu_per_note(r: WorkerResult) -> str:
    return f"{r.main_cpu_us:.0f} + {r.pool_cpu_us:.0f} µs/note"


def worker_figures(r: WorkerResult) -> str:
    return f"{r.steady_per_s:.0f} notes/s, CPU (main + pool) {cpu_per_note(r)}"


# --- Report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    versions: dict[str, str]
    pairs: list[PairResult]
    tracing: list[PairResult]
    export: tuple[int, int]  # what the receiver got from the traced web: requests, bytes
    span_floor: dict[str, float]  # bench/span_floor.py: the SDK's own work for a session read
    rss_mb: tuple[float, float]  # (generated, bare)
    generated_life: Lifecycle
    bare_life: Lifecycle
    worker: WorkerResult
    bare_worker: WorkerResult
    logins: LoginBurst
    load_average: tuple[str, str]  # 1-minute load average at the start and at the end
    elapsed_s: float


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} x {model}, {mem_kb / 2**20:.0f} GiB RAM, Linux {platform.release()}"


def load_average() -> str:
    # Other work on the machine (a test suite, a build) shows up here and in the numbers.
    return Path("/proc/loadavg").read_text().split()[0]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def exit_codes(life: Lifecycle) -> str:
    return "all 0" if set(life.exit_codes) == {0} else ", ".join(map(str, life.exit_codes))


def header(opts: Options, res: Results) -> list[str]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    stack = ", ".join(f"{name} {version}" for name, version in res.versions.items())
    return [
        "# twelve-app benchmark: generated service vs bare FastAPI",
        "",
        f"- Date: {now}; whole run {res.elapsed_s:.0f} s (`bench/run.py`)",
        f"- Machine: {machine()}; 1-min load average {res.load_average[0]} at the start, "
        f"{res.load_average[1]} at the end",
        f"- Stack: {stack}",
        f"- Load: `wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s`, "
        f"{opts.rounds} runs per side alternating generated/bare after a {opts.warmup_s} s "
        "warm-up; the best run of each side is shown. Both sides are one uvicorn process "
        "(uvloop, httptools, access log off, log_config=None); the generated one writes its "
        "JSON access log to a file.",
        "- Bare side: `bench/baseline.py`, same venv, same pool (10, no overflow) and psycopg "
        "settings, reading the same Redis key and the same notes row.",
        "",
    ]


def load_table(res: Results) -> list[str]:
    lines = [
        "## Throughput and latency",
        "",
        "| Pair (generated vs bare) | Generated req/s | Bare req/s | "
        "Generated p50 / p99 | Bare p50 / p99 | Server CPU per request, generated / bare | "
        "Ratio: bare / generated CPU | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [pair_row(r) for r in res.pairs]
    lines.append("")
    lines += [
        f"- {r.pair.label}: every run, req/s: generated {rates(r.generated_runs)}; "
        f"bare {rates(r.bare_runs)}"
        for r in res.pairs
    ]
    lines += [
        "- Server CPU per request is the web process's user + system time over a run divided "
        "by its requests (median of the runs); it excludes PostgreSQL's and Redis's own CPU. "
        "Outside load on the machine moves it far less than req/s, so the targets compare it: "
        "a ratio of 0.85x means the generated request costs 1/0.85 = 1.18 times the bare one.",
    ]
    return [*lines, ""]


def pair_row(r: PairResult) -> str:
    g, b = r.generated, r.bare
    return (
        f"| {r.pair.label} | {g.rps:,.0f} | {b.rps:,.0f} | "
        f"{g.p50_ms:.1f} / {g.p99_ms:.1f} ms | {b.p50_ms:.1f} / {b.p99_ms:.1f} ms | "
        f"{r.generated_cpu_us:.0f} / {r.bare_cpu_us:.0f} µs | {r.ratio:.2f}x | "
        f"{r.target} | {r.result} |"
    )


def added_limit_us(r: PairResult, floor_us: float) -> float | None:
    if r.pair.key == "traced_session":
        return floor_us + TARGET_OVER_FLOOR_US
    return TARGET_ADDED_US.get(r.pair.key)


def tracing_row(r: PairResult, floor_us: float) -> str:
    on, off = r.generated, r.bare
    limit = added_limit_us(r, floor_us)
    target = "(none)" if limit is None else f"≤ {limit:.0f} µs"
    return (
        f"| {r.pair.label} | {on.rps:,.0f} | {off.rps:,.0f} | "
        f"{on.p50_ms:.1f} / {on.p99_ms:.1f} ms | {off.p50_ms:.1f} / {off.p99_ms:.1f} ms | "
        f"{r.generated_cpu_us:.0f} / {r.bare_cpu_us:.0f} µs | {r.added_us:+.0f} µs | "
        f"{target} | {r.added_result(limit)} |"
    )


def tracing_table(
    tracing: list[PairResult], export: tuple[int, int], span_floor: dict[str, float]
) -> list[str]:
    lines = [
        "## Tracing on vs off",
        "",
        "The same generated web twice, one with `OTEL_EXPORTER_OTLP_ENDPOINT` set to a local "
        "OTLP/HTTP receiver (in the benchmark's own process) and `OTEL_TRACES_SAMPLER=always_on` "
        "(the last two rows: `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0`, no "
        "request sampled, and `0.1`), the other with tracing off; the off side is the web of "
        "the table above. The targets bound what tracing adds to a request's CPU: a probe "
        f"(no span) {TARGET_ADDED_US['traced_livez']:g} µs, a request not sampled "
        f"{TARGET_ADDED_US['unsampled_session']:g} µs, an always-on session read the SDK's own "
        f"floor (below) + {TARGET_OVER_FLOOR_US:g} µs.",
        "",
        "| Pair (on vs off) | On req/s | Off req/s | On p50 / p99 | Off p50 / p99 | "
        "Server CPU per request, on / off | Added by tracing | Target | Result |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    floor_us = span_floor["record_us"] + span_floor["encode_us"]
    lines += [tracing_row(r, floor_us) for r in tracing]
    lines.append("")
    lines += [
        f"- {r.pair.label}: every run, req/s: on {rates(r.generated_runs)}; "
        f"off {rates(r.bare_runs)}"
        for r in tracing
    ]
    requests, size = export
    lines += [
        f"- The receiver got {requests:,} export requests, {size / 1e6:.1f} MB of spans, from "
        "the traced web (its batch processor's defaults: up to 512 spans a request).",
        "",
    ]
    return lines + on_cost_table(tracing, span_floor)


def on_cost_table(tracing: list[PairResult], span_floor: dict[str, float]) -> list[str]:
    """The least tracing on can add to a session read: the SDK's own work for its spans."""
    session = next(r for r in tracing if r.pair.key == "traced_session")
    off = session.bare_cpu_us
    record, encode = span_floor["record_us"], span_floor["encode_us"]
    spans = int(span_floor["spans_per_read"])
    added = session.added_us
    return [
        "### The least tracing on can add to a session read",
        "",
        f"A traced `GET /api/v1/session` exports {spans} spans: its server span and "
        "redis-py's EVALSHA under it. `bench/span_floor.py` makes those spans with the SDK "
        "alone (no web, no instrumentation, no export thread) in the project's venv: CPU time "
        "of one thread per read, best of 7 runs, so load on the machine hardly moves it.",
        "",
        "| Part | CPU per read |",
        "|---|---:|",
        f"| SDK: start, set attributes, end the {spans} spans | {record:.0f} µs |",
        f"| OTLP exporter: encode and serialise them (batches of 512) | {encode:.0f} µs |",
        f"| Together: what tracing on adds at the least | {record + encode:.0f} µs |",
        f"| The untraced read (off side of the session row above) | {off:.0f} µs |",
        "",
        f"| Measured: what tracing on added to the session read (row above) | {added:.0f} µs |",
        f"| Beyond the floor: the instrumentation around the SDK, the export thread, noise | "
        f"{added - record - encode:.0f} µs |",
        "",
        "- The measured on-minus-off CPU of the rows above also holds that instrumentation "
        "(the server span's layer, redis-py's wrapper, the context) and the noise between two "
        "processes' runs; `bench/PROFILE-traced.md` (`bench/profile.py --traced`) splits the "
        "traced web's CPU by where it goes.",
        "",
    ]


def process_table(opts: Options, res: Results) -> list[str]:
    gen, bare, w, bw = res.generated_life, res.bare_life, res.worker, res.bare_worker
    exit_ok = gen.exit_median < TARGET_EXIT_S and set(gen.exit_codes) == {0}
    start_limit = bare.start_median + TARGET_START_OVER_BARE_S
    rss_limit = res.rss_mb[1] + TARGET_RSS_OVER_BARE_MB
    worker_ratio = w.steady_per_s / bw.steady_per_s
    return [
        "## Processes",
        "",
        "| Measure | Generated | Bare | Target | Result |",
        "|---|---:|---:|---|---|",
        f"| Cold start: exec → first 200 from /readyz (median of {opts.runs}) | "
        f"{gen.start_median:.2f} s | {bare.start_median:.2f} s | "
        f"≤ bare + {TARGET_START_OVER_BARE_S:g} s ({start_limit:.2f} s) | "
        f"{verdict(gen.start_median <= start_limit)} |",
        f"| Idle SIGTERM → exit (median of {opts.runs}); exit codes | "
        f"{ms(gen.exit_median)}; {exit_codes(gen)} | {ms(bare.exit_median)}; {exit_codes(bare)} | "
        f"< {ms(TARGET_EXIT_S)}, 0 | {verdict(exit_ok)} |",
        f"| Web RSS after the load (VmRSS) | {res.rss_mb[0]:.0f} MB | {res.rss_mb[1]:.0f} MB | "
        f"≤ bare + {TARGET_RSS_OVER_BARE_MB:g} MB ({rss_limit:.0f} MB) | "
        f"{verdict(res.rss_mb[0] <= rss_limit)} |",
        f"| Worker: {w.notes} queued notes, one `worker` process, concurrency {w.concurrency}; "
        "bare: `bench/bare_worker.py` on the same notes | "
        f"{w.steady_per_s:.0f} notes/s; CPU {cpu_per_note(w)}; all done {w.wall_s:.1f} s after "
        f"exec; exit {w.exit_code} | {bw.steady_per_s:.0f} notes/s; CPU {cpu_per_note(bw)}; "
        f"all done {bw.wall_s:.1f} s; exit {bw.exit_code} | "
        f"≥ {TARGET_WORKER_RATIO}x of bare ({worker_ratio:.2f}x) | "
        f"{verdict(worker_ratio >= TARGET_WORKER_RATIO)} |",
        f"| Logins per second, one web process, default argon2id (m=19 MiB, t=2, p=1), "
        f"{res.logins.clients} clients for {res.logins.seconds:.0f} s | "
        f"{res.logins.per_s:.0f}/s{other_answers(res.logins.others)} | — | (none) | — |",
        f"| `/livez` p99 during that login burst ({len(res.logins.livez_ms)} probes) | "
        f"{res.logins.livez_p99_ms:.1f} ms | — | < 50 ms | "
        f"{verdict(res.logins.livez_p99_ms < 50)} |",
        "",
        f"- Cold starts, s: generated {fmt(gen.start_s)}; bare {fmt(bare.start_s)}",
        f"- Idle exits, ms: generated {fmt([s * 1000 for s in gen.exit_s], 0)}; "
        f"bare {fmt([s * 1000 for s in bare.exit_s], 0)}. Bare uvicorn re-raises SIGTERM after "
        "its shutdown, so it dies by the signal (-15) and skips interpreter clean-up; the "
        "generated web returns and exits 0.",
        "- Worker notes/s is the draining rate, between the first and the last `enriched_at`; "
        "the all-done time also counts the worker's own start-up. CPU per note: user + system "
        "time of the main process (the consumer) + its pool processes (the tasks), from the "
        "first poll that finds notes done to the last, over the notes done in between; it "
        "varies less with the machine's load than the rate. The two workers take turns "
        f"({opts.rounds} rounds, the best of each shown), on the same notes with their results "
        "cleared, each from its own queue.",
        "",
    ]


def render_report(opts: Options, res: Results) -> str:
    return "\n".join(
        [
            *header(opts, res),
            *load_table(res),
            *tracing_table(res.tracing, res.export, res.span_floor),
            *process_table(opts, res),
        ]
    )


def fmt(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


# --- The run -----------------------------------------------------------------------------------


def prepare(opts: Options, cleanup: ExitStack) -> Project:
    return migrated_project(cleanup, opts.redis_db, opts.keep)


def migrated_project(cleanup: ExitStack, redis_db: int, keep: bool = False) -> Project:
    """Render, install, create the database, claim a Redis DB (`redis_db` unless taken),
    migrate; undo all at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="twelve-bench-"))
    if keep:
        log(f"keeping {workdir}")
    else:
        cleanup.callback(subprocess.run, ["rm", "-rf", str(workdir)], check=False)
    log(f"rendering and installing into {workdir}")
    root = render_and_install(workdir)
    python = root / ".venv" / "bin" / "python"
    redis_db = claim_redis_db(python, redis_db)
    cleanup.callback(release_redis_db, python, redis_db)
    log(f"using Redis logical DB {redis_db}")
    database = f"bench_{os.getpid()}"
    project = Project(
        root=root,
        python=python,
        database=database,
        env=service_env(database, free_port(), redis_db),
        logs=workdir / "logs",
    )
    project.logs.mkdir()
    subprocess.run(["createdb", *PG_ARGS, database], check=True)
    cleanup.callback(subprocess.run, ["dropdb", *PG_ARGS, "--if-exists", database], check=False)
    log("release: migrations")
    subprocess.run(
        [str(project.python), "-m", PACKAGE, "release"],
        cwd=root,
        env=project.env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return project


@dataclass(frozen=True)
class LoadPhase:
    pairs: list[PairResult]
    tracing: list[PairResult]  # the generated web with tracing on vs the same with it off
    export: "Receiver"
    rss_mb: tuple[float, float]
    queued_note_ids: list[int]
    logins: LoginBurst


class Receiver:
    """A local OTLP/HTTP endpoint for the traced web: answers every export with 200 and counts
    what it got, as a collector next to the service would (no decoding: stdlib only here)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bytes += len(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tracing_phase(
    opts: Options, project: Project, untraced: Server, cookie: str, note_id: int
) -> tuple[list[PairResult], Receiver]:
    """The same web with tracing on (always-on sampling, OTLP/HTTP to a local receiver) against
    itself with tracing off, on the same three endpoints; then the session read with one trace
    in ten sampled."""
    receiver = Receiver()
    port = free_port()
    traced_env = {
        "PORT": str(port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    with running(start(project, web_args(), "web-traced.log", **traced_env)) as traced:
        wait_ready(traced, port)
        pairs = [
            # A probe: not traced (web/server_span.py), so this row shows that it costs nothing.
            Pair(
                "traced_livez",
                "GET /livez (a probe: no span), tracing on vs off",
                "/livez",
                "/livez",
            ),
            Pair(
                "traced_session",
                "GET /api/v1/session, tracing on vs off",
                "/api/v1/session",
                "/api/v1/session",
                {"Cookie": f"session={cookie}"},
            ),
            Pair(
                "traced_note",
                "GET /api/v1/notes/{id}, tracing on vs off",
                f"/api/v1/notes/{note_id}",
                f"/api/v1/notes/{note_id}",
                {"Cookie": f"session={cookie}"},
            ),
        ]
        results = run_pairs(opts, pairs, Server(port, traced.pid), untraced)
    # What production tracing runs with: a share of traces kept, decided at the root. At 0 no
    # request is sampled, so the row is what the unsampled path itself costs.
    for key, ratio, label in (
        ("unsampled_session", "0", "none sampled"),
        ("sampled_session", "0.1", "1 in 10 sampled"),
    ):
        sampled_env = {
            **traced_env,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": ratio,
        }
        with running(start(project, web_args(), f"web-{key}.log", **sampled_env)) as sampled:
            wait_ready(sampled, port)
            pair = Pair(
                key,
                f"GET /api/v1/session, tracing on, {label}, vs off",
                "/api/v1/session",
                "/api/v1/session",
                {"Cookie": f"session={cookie}"},
            )
            results += run_pairs(opts, [pair], Server(port, sampled.pid), untraced)
    receiver.close()  # after the traced webs' exit, which flushes what they still held
    log(f"  receiver: {receiver.requests} export requests, {receiver.bytes / 1e6:.1f} MB")
    return results, receiver


def load_phase(opts: Options, project: Project, bare_port: int) -> LoadPhase:
    """Both web servers up at once (only one under load at a time), then the notes queued."""
    gen_port = int(project.env["PORT"])
    with ExitStack() as servers:
        web = servers.enter_context(running(start(project, web_args(), "web.log")))
        wait_ready(web, gen_port)
        cookie = create_session(gen_port)
        note_id = post_notes(gen_port, cookie, 1)[0]
        # The baseline GETs the very key the generated service reads: same value, same size.
        # Under the service's key prefix (REDIS_KEY_PREFIX: the package name by default).
        prefix = project.env.get("REDIS_KEY_PREFIX", project.root.name.replace("-", "_"))
        session_key = f"{prefix}:session:" + cookie.split(".", 1)[0]
        bare_proc = start(
            project,
            baseline_args(),
            "baseline.log",
            PORT=str(bare_port),
            BENCH_SESSION_KEY=session_key,
        )
        bare = servers.enter_context(running(bare_proc))
        wait_ready(bare, bare_port)

        pairs = [
            Pair("livez", "GET /livez vs constant", "/livez", "/livez"),
            # The generated /livez is a plain Starlette route (health.py); this pair compares it
            # with a bare route of that same kind, so the ratio is the middleware's cost alone.
            Pair(
                "livez_plain", "GET /livez vs constant, plain Starlette route", "/livez", "/plain"
            ),
            Pair(
                "session",
                "GET /api/v1/session vs one Redis GET",
                "/api/v1/session",
                "/session",
                {"Cookie": f"session={cookie}"},
            ),
            Pair(
                "note",
                "GET /api/v1/notes/{id} vs one Redis GET and one SELECT",
                f"/api/v1/notes/{note_id}",
                f"/notes/{note_id}",
                {"Cookie": f"session={cookie}"},
            ),
        ]
        results = run_pairs(opts, pairs, Server(gen_port, web.pid), Server(bare_port, bare.pid))
        rss = (rss_mb(web.pid), rss_mb(bare.pid))
        log(f"RSS after load: generated {rss[0]:.0f} MB, bare {rss[1]:.0f} MB")
        tracing, receiver = tracing_phase(opts, project, Server(gen_port, web.pid), cookie, note_id)
        burst = login_burst(gen_port)
        log(
            f"logins: {burst.per_s:.0f}/s{other_answers(burst.others)}; "
            f"/livez p99 during them {burst.livez_p99_ms:.1f} ms"
        )

        log(f"queueing {opts.notes} notes over HTTP (no worker running yet)")
        ids = post_notes(gen_port, cookie, opts.notes)
    return LoadPhase(results, tracing, receiver, rss, ids, burst)


def tracing_only(opts: Options, project: Project) -> None:
    """The tracing rows and the SDK floor, against an untraced web of the same render, printed
    as the full run's tables."""
    port = int(project.env["PORT"])
    with running(start(project, web_args(), "web.log")) as web:
        wait_ready(web, port)
        cookie = create_session(port)
        note_id = post_notes(port, cookie, 1)[0]
        tracing, receiver = tracing_phase(opts, project, Server(port, web.pid), cookie, note_id)
    span_floor = json.loads(venv_python(project.python, str(BENCH_DIR / "span_floor.py")))
    export = (receiver.requests, receiver.bytes)
    print(
        "\n".join(
            [
                f"1-min load average: {load_average()}",
                "",
                *tracing_table(tracing, export, span_floor),
            ]
        )
    )


def worker_phase(opts: Options, project: Project) -> None:
    """The worker row alone: notes queued over HTTP (web started for that only), then drained."""
    port = int(project.env["PORT"])
    with running(start(project, web_args(), "web.log")) as web:
        wait_ready(web, port)
        log(f"queueing {opts.notes} notes over HTTP (no worker running yet)")
        ids = post_notes(port, create_session(port), opts.notes)
    log("worker: draining the queue")
    worker, bare = worker_throughput(project, ids, opts.rounds)
    log(f"best of {opts.rounds}: generated {worker_figures(worker)}")
    log(f"                  bare {worker_figures(bare)}")
    ratio = worker.steady_per_s / bare.steady_per_s
    log(f"generated / bare: {ratio:.2f}x by rate (target ≥ {TARGET_WORKER_RATIO}x)")


# `--only PHASE`: one phase on a fresh render, its figures logged, no report written.
PHASES = {"tracing": tracing_only, "worker": worker_phase}


def main() -> None:
    opts = parse_options()
    if opts.only is not None:
        with ExitStack() as cleanup:
            PHASES[opts.only](opts, prepare(opts, cleanup))
        return
    began = time.perf_counter()
    load_at_start = load_average()
    with ExitStack() as cleanup:
        project = prepare(opts, cleanup)
        bare_port = free_port()
        loaded = load_phase(opts, project, bare_port)

        log("tracing: the SDK's own work for a session read's spans (bench/span_floor.py)")
        span_floor = json.loads(venv_python(project.python, str(BENCH_DIR / "span_floor.py")))

        log("worker: draining the queue")
        worker, bare_worker = worker_throughput(project, loaded.queued_note_ids, opts.rounds)
        log(f"  {worker.steady_per_s:.0f} notes/s, bare {bare_worker.steady_per_s:.0f} notes/s")

        log(f"cold start and idle exit, {opts.runs} runs each side")
        gen_port = int(project.env["PORT"])
        gen_life = lifecycle(project, web_args(), gen_port, opts.runs, "web")
        bare_life = lifecycle(project, baseline_args(), bare_port, opts.runs, "baseline")

        results = Results(
            versions=package_versions(project),
            pairs=loaded.pairs,
            tracing=loaded.tracing,
            export=(loaded.export.requests, loaded.export.bytes),
            span_floor=span_floor,
            rss_mb=loaded.rss_mb,
            generated_life=gen_life,
            bare_life=bare_life,
            worker=worker,
            bare_worker=bare_worker,
            logins=loaded.logins,
            load_average=(load_at_start, load_average()),
            elapsed_s=time.perf_counter() - began,
        )
    report = render_report(opts, results)
    print(report)
    opts.output.write_text(report)
    log(f"wrote {opts.output}")


if __name__ == "__main__":
    main()
