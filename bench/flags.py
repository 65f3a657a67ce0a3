"""What a feature flag evaluation costs the generated service (its core/flags.py).

    .venv/bin/python bench/flags.py                    # about 1 minute; writes bench/FLAGS.md
    .venv/bin/python bench/flags.py --project DIR      # an already rendered and installed project

Renders the template and installs it from its locks (as bench/run.py does), then, in the
project's own venv, builds the flags the way a web process does (`create_flags`, the default
OpenFeature provider, a flagd-format flag file, one flag pinned by the environment) and times
each way an evaluation can go. The figure is CPU time per evaluation (the thread's own user +
system time, so other processes on a shared machine do not count), the best of 7 runs of
20,000 evaluations. Needs no database, Redis or network.

The target: an evaluation on the request path costs under 10 µs. On the request path a flag is
asked for a user whose answer the process already has (`Flags` remembers it until the flags
change), with the request's variant record in place, as web/observe.py sets it.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from run import BENCH_DIR, PACKAGE, load_average, machine, render_and_install

TARGET_US = 10.0

# Runs in the rendered project's venv. Prints one JSON object: row name -> µs per evaluation.
MEASURE = """
import json, os, sys, tempfile, time
from pathlib import Path
flag_file = Path(tempfile.mkdtemp()) / "flags.json"
flag_file.write_text(json.dumps({"flags": {
    "note-summary": {"state": "ENABLED", "variants": {"on": True, "off": False},
                     "defaultVariant": "off",
                     "targeting": {"fractional": [["on", 30], ["off", 70]]}},
    "static": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
}}))
os.environ.update(DATABASE_URL="postgresql://u@localhost/x", REDIS_URL="redis://localhost",
                  SECRET_KEY="k" * 40, FLAGS_FILE=str(flag_file), FLAG_SIGN_UP="on")
from prometheus_client import CollectorRegistry
from openfeature.evaluation_context import EvaluationContext
from PACKAGE.core.settings import Settings
from PACKAGE.core.flags import EVALUATED, NOTE_SUMMARY, SIGN_UP, Flag, create_flags

flags = create_flags(Settings(), CollectorRegistry())
client = flags.client
EVALUATED.set({})
UNDECLARED = Flag("static", False, "bench", NOTE_SUMMARY.expires, "")

def cpu_us(call, n=20_000, runs=7):
    best = float("inf")
    for _ in range(runs):
        started = time.thread_time_ns()
        for i in range(n):
            call(i)
        best = min(best, (time.thread_time_ns() - started) / n / 1000)
    return best

user = EvaluationContext(targeting_key="42")
fresh = iter(range(10**9))
rows = {
    "remembered: kill switch (environment), anonymous":
        cpu_us(lambda i: flags.enabled(SIGN_UP, None)),
    "remembered: 30% rollout (flag file), one user":
        cpu_us(lambda i: flags.enabled(NOTE_SUMMARY, 42)),
    "first for a user: 30% rollout (flag file), through the SDK":
        cpu_us(lambda i: flags.enabled(NOTE_SUMMARY, next(fresh) + 10**6)),
    "first for a user: on/off (flag file), through the SDK":
        cpu_us(lambda i: flags.enabled(UNDECLARED, next(fresh) + 10**6)),
    "SDK alone: get_boolean_details, environment flag":
        cpu_us(lambda i: client.get_boolean_details("sign-up", True, user)),
    "SDK alone: get_boolean_details, flag file on/off":
        cpu_us(lambda i: client.get_boolean_details("static", False, user)),
    "SDK alone: get_boolean_details, flag file 30% rollout":
        cpu_us(lambda i: client.get_boolean_details("note-summary", False, user)),
}
flags.close()
print(json.dumps(rows))
"""


def measure(python: Path, multiprocess: bool) -> dict[str, float]:
    env = {"PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory() as metrics_dir:
        if multiprocess:  # as with WEB_CONCURRENCY > 1: counters in files shared by processes
            env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        done = subprocess.run(
            [str(python), "-c", MEASURE.replace("PACKAGE", PACKAGE)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(single: dict[str, float], multi: dict[str, float], started: str, load: str) -> str:
    lines = [
        "# Feature flag evaluation cost (`bench/flags.py`)",
        "",
        f"- Date: {started}; {machine()}; 1-min load average {load}",
        "- CPU time per evaluation (thread time), best of 7 runs of 20,000; µs",
        "",
        "| Evaluation | one web process | WEB_CONCURRENCY > 1 (metrics in files) | Target |",
        "|---|---:|---:|---|",
    ]
    for name, micros in single.items():
        on_path = name.startswith("remembered")
        verdict = "PASS" if max(micros, multi[name]) < TARGET_US else "FAIL"
        target = f"< {TARGET_US:.0f} µs: {verdict}"
        lines.append(
            f"| {name} | {micros:.1f} | {multi[name]:.1f} | {target if on_path else '(none)'} |"
        )
    lines += [
        "",
        "- *remembered*: the request path once a process has answered for that user since the",
        "  flags last changed (or within the last minute); what `flags.enabled` costs then,",
        "  counting the metric and recording the variant for the access line.",
        "- *first for a user*: `flags.enabled` for a new user: the OpenFeature SDK's",
        "  `get_boolean_details`, then the provider (environment, then flagd-core), then the",
        "  metric and the record. Paid once per user and process after each flag change.",
        "- *SDK alone*: `get_boolean_details` with nothing around it, for comparison: the SDK's",
        "  own work per call (hooks, context merging) is most of it; flagd's `fractional` adds",
        "  a CBOR encoding and a MurmurHash3 of flag and user.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a rendered, installed project to use")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "FLAGS.md")
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = load_average()
    with tempfile.TemporaryDirectory() as workdir:
        root = args.project or render_and_install(Path(workdir))
        python = root / ".venv" / "bin" / "python"
        single, multi = measure(python, False), measure(python, True)
    text = report(single, multi, started, f"{load} at the start, {load_average()} at the end")
    print(text)
    args.output.write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
