"""What the security headers and CORS cost a request in the generated service (web/headers.py,
web/cors.py): the target is at most 2 µs per request for the headers.

    .venv/bin/python bench/headers.py                  # about 1 minute; writes bench/HEADERS.md
    .venv/bin/python bench/headers.py --project DIR    # an already rendered and installed project

Renders the template and installs it from its locks (as bench/run.py does), then, in the
project's own venv, calls each middleware around the same bare ASGI app that answers with a
start and a body message, as a route does, and subtracts the bare app's own time. The request
carries the headers a browser sends (eight of them). Each call is driven to its end without an
event loop (nothing in it waits), so the loop's cost is not counted on either side. The figure is
CPU time per request (the thread's own time, so other processes on a shared machine do not
count), the best of 7 runs of 200,000. Needs no database, Redis or network.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from run import BENCH_DIR, PACKAGE, load_average, machine, render_and_install

TARGET_US = 2.0

# Runs in the rendered project's venv. Prints one JSON object: row name -> µs per request.
MEASURE = """
import json, time
from PACKAGE.web.cors import CorsMiddleware
from PACKAGE.web.headers import SecurityHeadersMiddleware, security_headers

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})

async def receive():
    return {"type": "http.request", "body": b""}

async def send(message):
    pass

def scope(method=b"GET", origin=None, preflight=False):
    headers = [(b"host", b"api.example.com"), (b"user-agent", b"Mozilla/5.0"),
               (b"accept", b"application/json"), (b"accept-language", b"en"),
               (b"accept-encoding", b"gzip, br"), (b"cookie", b"__Host-session=abc"),
               (b"sec-fetch-site", b"cross-site" if origin else b"same-origin"),
               (b"sec-fetch-mode", b"cors")]
    if origin:
        headers.append((b"origin", origin))
    if preflight:
        headers.append((b"access-control-request-method", b"POST"))
    return {"type": "http", "method": method.decode(), "path": "/api/v1/session",
            "headers": headers}

def run_once(asgi, s):
    coro = asgi(s, receive, send)
    try:
        coro.send(None)
    except StopIteration:
        pass

def cpu_us(asgi, s, n=200_000, runs=7):
    best = float("inf")
    for _ in range(runs):
        started = time.thread_time_ns()
        for _ in range(n):
            run_once(asgi, s)
        best = min(best, (time.thread_time_ns() - started) / n / 1000)
    return best

plain = scope()
listed, stranger = b"https://app.example.com", b"https://evil.example"
headers = SecurityHeadersMiddleware(app, security_headers(True))
docs = {"/docs": security_headers(True, b"x")}
with_docs = SecurityHeadersMiddleware(app, security_headers(True), docs)
cors = CorsMiddleware(app, ["https://app.example.com"], 600)
bare = cpu_us(app, plain)
rows = {
    "bare app (subtracted from the rows below)": bare,
    "security headers (HSTS on, API docs off)": cpu_us(headers, plain) - bare,
    "security headers, API docs on (a per-path lookup)": cpu_us(with_docs, plain) - bare,
    "CORS on, same-origin request": cpu_us(cors, plain) - bare,
    "CORS on, request from a listed origin": cpu_us(cors, scope(origin=listed)) - bare,
    "CORS on, preflight from a listed origin (answered, app not called)":
        cpu_us(cors, scope(b"OPTIONS", listed, True)) - bare,
    "CORS on, request from another origin": cpu_us(cors, scope(origin=stranger)) - bare,
}
print(json.dumps(rows))
"""


def measure(python: Path) -> dict[str, float]:
    done = subprocess.run(
        [str(python), "-c", MEASURE.replace("PACKAGE", PACKAGE)],
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(rows: dict[str, float], started: str, load: str) -> str:
    lines = [
        "# Security headers and CORS cost (`bench/headers.py`)",
        "",
        f"- Date: {started}; {machine()}; 1-min load average {load}",
        "- CPU time per request (thread time), best of 7 runs of 200,000; µs, the bare app's",
        "  own time subtracted",
        "",
        "| Layer | µs per request | Target |",
        "|---|---:|---|",
    ]
    for name, micros in rows.items():
        target = "(none)"
        if name.startswith("security headers"):
            target = f"≤ {TARGET_US:.0f} µs: {'PASS' if micros <= TARGET_US else '**FAIL**'}"
        lines.append(f"| {name} | {micros:.2f} | {target} |")
    lines += [
        "",
        "- CORS is off by default (no CORS_ORIGINS): then its layer is not added at all and",
        "  costs nothing; the rows show its cost when a front end on another origin is listed.",
        "- The preflight row is a whole answer made by the layer itself, compared with the bare",
        "  app's answer.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a rendered, installed project to use")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "HEADERS.md")
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = load_average()
    with tempfile.TemporaryDirectory() as workdir:
        root = args.project or render_and_install(Path(workdir))
        rows = measure(root / ".venv" / "bin" / "python")
    text = report(rows, started, f"{load} at the start, {load_average()} at the end")
    print(text)
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
