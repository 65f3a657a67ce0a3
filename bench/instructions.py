"""Instructions per request of the generated web and of bench/baseline.py, counted by callgrind.

    .venv/bin/python bench/instructions.py    # about 8 minutes on 2 cores -> bench/INSTRUCTIONS.md

run.py's CPU time per request moves with whatever else the machine does; an instruction count
does not: the same code, inputs, environment and hash seed (SEED) count the same however loaded
the machine is. So this is the figure to compare two versions of the code on a busy machine,
and the one to bisect a regression with. It leaves out the kernel (socket reads and writes, the
same calls on both sides here) and time lost to cache misses, so its bare / generated ratio is
lower than run.py's CPU ratio: read it as a direction, and run.py on a quiet machine for the
verdict.

Renders and installs the template as run.py does, migrates a fresh database, makes an account,
its session and a note with a plain web process, then runs each server under
`valgrind --tool=callgrind` with counting off. Each endpoint is requested `--warmup` times on one
keep-alive connection, counting is switched on for `--requests` more, then off, and the count is
divided by those requests. Needs valgrind (`apt-get install -y valgrind`).
"""

import argparse
import socket
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from run import (
    BENCH_DIR,
    Project,
    baseline_args,
    create_session,
    free_port,
    log,
    machine,
    migrated_project,
    post_notes,
    running,
    start,
    wait_ready,
    web_args,
)

# One hash seed for every counted server: with Python's random one, the same server counted twice
# differed by up to 15,000 instructions a request (dicts and sets lay out differently); with
# this, by a few instructions.
SEED = {"PYTHONHASHSEED": "0"}


@dataclass(frozen=True)
class Endpoint:
    name: str
    generated: str  # its path on the generated web
    bare: str  # and on baseline.py


@dataclass
class Options:
    requests: int
    warmup: int
    redis_db: int
    output: Path
    session_key: str = ""


def keep_alive_gets(port: int, path: str, cookie: str, count: int) -> bytes:
    """`count` GETs of `path`, one after the other on one connection; the last body."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()
    body = b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        answers = sock.makefile("rb")
        for _ in range(count):
            sock.sendall(request)
            length = 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = answers.read(length)
    return body


@dataclass
class Counted:
    """A server under callgrind, counting nothing until told to."""

    server: subprocess.Popen[bytes]
    port: int
    out: Path  # callgrind's output file: each dump is this path with .1, .2, ... after it
    dumps: int = 0

    @classmethod
    def start(cls, project: Project, args: list[str], opts: Options) -> "Counted":
        port = free_port()
        out = project.logs / f"callgrind.{port}"
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        with open(project.logs / f"{out.name}.log", "ab") as output:
            server = subprocess.Popen(
                [*valgrind, f"--callgrind-out-file={out}", str(project.python), *args],
                cwd=project.root,
                env={
                    **project.env,
                    "PORT": str(port),
                    "BENCH_SESSION_KEY": opts.session_key,
                    **SEED,
                },
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return cls(server, port, out)

    def per_request(self, path: str, cookie: str, opts: Options) -> float:
        """Instructions per request of `path`: `opts.warmup` requests uncounted, then
        `opts.requests` counted and dumped."""
        keep_alive_gets(self.port, path, cookie, opts.warmup)
        control(self.server.pid, "--instr=on")
        last = keep_alive_gets(self.port, path, cookie, opts.requests)
        control(self.server.pid, "--instr=off")
        control(self.server.pid, "--dump")  # counted since the previous dump
        assert last.startswith(b"{"), last[:200]  # a JSON answer, not an error page
        self.dumps += 1
        dump = Path(f"{self.out}.{self.dumps}").read_text(errors="replace")
        totals = [int(line.split()[1]) for line in dump.splitlines() if line.startswith("totals:")]
        return max(totals) / opts.requests


def counted(
    project: Project, args: list[str], paths: list[tuple[str, str]], opts: Options
) -> list[float]:
    """Instructions per request of each (path, cookie), in turn, on one server `args` starts."""
    counting = Counted.start(project, args, opts)
    with running(counting.server):
        wait_ready(counting.server, counting.port, timeout=900)  # about 50 times slower
        return [counting.per_request(path, cookie, opts) for path, cookie in paths]


def control(pid: int, command: str) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True)


def prepare(opts: Options, cleanup: ExitStack) -> tuple[Project, str, int]:
    """A rendered, installed and migrated project; a session cookie and a note of its user."""
    project = migrated_project(cleanup, opts.redis_db)
    port = int(project.env["PORT"])
    with running(start(project, web_args(), "web.log")) as web:
        wait_ready(web, port)
        cookie = create_session(port)
        note_id = post_notes(port, cookie, 1)[0]
    prefix = project.env.get("REDIS_KEY_PREFIX", project.root.name.replace("-", "_"))
    opts.session_key = f"{prefix}:session:" + cookie.split(".", 1)[0]
    return project, cookie, note_id


def parse_options(doc: str, requests: int, warmup: int, output: Path) -> Options:
    """The command line of a counting script: `doc` is its docstring, the rest its defaults."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=requests, help=f"counted ({requests})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"uncounted first ({warmup})")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis logical DB to claim (14)")
    parser.add_argument("--output", type=Path, default=output)
    args = parser.parse_args()
    return Options(args.requests, args.warmup, args.redis_db, args.output)


def write_report(opts: Options, title: str, script: str, body: list[str]) -> None:
    """A counting script's Markdown at `opts.output`: its title, how it counted, then `body`."""
    report = [
        f"# {title}",
        "",
        f"`bench/{script}`: callgrind, {opts.requests} requests counted after {opts.warmup}"
        f" uncounted, one keep-alive connection, through uvicorn. {machine()}.",
        "",
        *body,
        "",
    ]
    opts.output.write_text("\n".join(report))
    log(f"wrote {opts.output}")


def main() -> None:
    opts = parse_options(__doc__, 2000, 300, BENCH_DIR / "INSTRUCTIONS.md")
    with ExitStack() as cleanup:
        project, cookie, note_id = prepare(opts, cleanup)
        session = f"session={cookie}"
        endpoints = [
            Endpoint("GET /livez", "/livez", "/livez"),
            Endpoint("GET /api/v1/session", "/api/v1/session", "/session"),
            Endpoint("GET /api/v1/notes/{id}", f"/api/v1/notes/{note_id}", f"/notes/{note_id}"),
        ]
        rows = []
        for endpoint in endpoints:
            log(f"counting {endpoint.name}")
            [generated] = counted(project, web_args(), [(endpoint.generated, session)], opts)
            [bare] = counted(project, baseline_args(), [(endpoint.bare, session)], opts)
            rows.append(
                f"| {endpoint.name} | {generated:,.0f} | {bare:,.0f} | {bare / generated:.2f}x |"
            )
    write_report(
        opts,
        "Instructions per request: generated web vs bare FastAPI",
        "instructions.py",
        ["| endpoint | generated | bare | bare / generated |", "|---|---:|---:|---:|", *rows],
    )


if __name__ == "__main__":
    main()
