"""What each per-request layer of the generated web costs, in instructions per request.

    .venv/bin/python bench/layers.py    # about 15 minutes on 2 cores -> bench/LAYERS.md

bench/instructions.py gives the gap between a generated read and the bare FastAPI one; this
splits it. The generated web is counted whole, then again without one layer (or one part of a
layer) at a time, started by bench/without.py: the difference is what that layer costs each
request. Counted under callgrind like instructions.py (needs valgrind), so the figures do not
move with other work on the machine; two servers are counted at a time.

Every server runs with one hash seed (PYTHONHASHSEED=0): with a random seed each, two counts of
the same server differed by up to 15,000 instructions a request, enough to blur a small layer.
A layer taken out can still shift what the rest costs a little (a dict laid out otherwise), so
the rows do not add up exactly to the gap; they say where it is.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from instructions import counted, parse_options, prepare, write_report
from run import (
    BENCH_DIR,
    PACKAGE,
    baseline_args,
    log,
)

WITHOUT = BENCH_DIR / "without.py"

# (row, the layers without.py takes out, what the row is)
VARIANTS = [
    ("security headers", ["security-headers"], "SecurityHeadersMiddleware (web/headers.py)"),
    (
        "cross-origin check and body limit",
        ["cross-origin-and-body-limit"],
        "web/csrf.py and web/body_limit.py",
    ),
    ("request deadline", ["deadline"], "DeadlineMiddleware (web/deadline.py)"),
    (
        "observe: request id, access line, metrics, log context",
        ["observe"],
        "ObserveMiddleware (web/observe.py), all of it",
    ),
    ("- of which the access line", ["access-line"], "AccessLog.write (core/logging.py)"),
    ("- of which the HTTP metrics", ["http-metrics"], "counter, histogram, in-progress gauge"),
    ("- of which the log context", ["log-context"], "structlog's contextvars, cleared and bound"),
    (
        "Redis socket timeout",
        ["redis-socket-timeout"],
        "REDIS_TIMEOUT_SECONDS on reads and writes (core/redis_client.py); connect keeps it",
    ),
]

AFTER_THE_ROWS = (
    "The rows after `observe` are parts of it, not more on top. What no row holds is the rest"
    " of the gap: the session's script (EVALSHA) against a GET, the signed cookie, the"
    " response models, the flags, the route's own code."
)
RESOLUTION = (
    "Resolution: taking a layer out also moves where everything else lies in memory, which"
    " alone shifts a count. Three runs of this script agreed within about 6,000 on the session"
    " read; on the note read a row moved by up to 28,000, and its log-context row once came"
    " out negative: read the note column as a direction only."
)


@dataclass(frozen=True)
class Count:
    session: float
    note: float


def main() -> None:
    opts = parse_options(__doc__, 500, 200, BENCH_DIR / "LAYERS.md")
    with ExitStack() as cleanup:
        project, cookie, note_id = prepare(opts, cleanup)
        session = f"session={cookie}"
        generated = [("/api/v1/session", session), (f"/api/v1/notes/{note_id}", session)]
        bare = [("/session", session), (f"/notes/{note_id}", session)]
        servers = {
            "whole": ([str(WITHOUT), PACKAGE], generated),
            "bare": (baseline_args(), bare),
            **{row: ([str(WITHOUT), PACKAGE, *layers], generated) for row, layers, _ in VARIANTS},
        }

        def count(name: str) -> tuple[str, Count]:
            server_args, paths = servers[name]
            log(f"counting: {name}")
            session_read, note_read = counted(project, server_args, paths, opts)
            return name, Count(session_read, note_read)

        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = dict(pool.map(count, servers))
    whole, bare_count = counts["whole"], counts["bare"]
    rows = [
        f"| {row} | {whole.session - counts[row].session:,.0f} "
        f"| {whole.note - counts[row].note:,.0f} | {what} |"
        for row, _, what in VARIANTS
    ]
    write_report(
        opts,
        "What each per-request layer costs: instructions per request",
        "layers.py",
        [
            "| | GET /api/v1/session | GET /api/v1/notes/{id} |",
            "|---|---:|---:|",
            f"| generated web, whole | {whole.session:,.0f} | {whole.note:,.0f} |",
            f"| bare FastAPI (bench/baseline.py) | {bare_count.session:,.0f} "
            f"| {bare_count.note:,.0f} |",
            f"| the gap | {whole.session - bare_count.session:,.0f} "
            f"| {whole.note - bare_count.note:,.0f} |",
            "",
            "Without each layer in turn (bench/without.py), the instructions the request saves:",
            "",
            "| layer | GET /api/v1/session | GET /api/v1/notes/{id} | what is taken out |",
            "|---|---:|---:|---|",
            *rows,
            "",
            AFTER_THE_ROWS,
            "",
            RESOLUTION,
        ],
    )


if __name__ == "__main__":
    main()
