"""Hostile input: schemathesis fuzzes every operation in /openapi.json against a real web
process, with valid and invalid input, and then chains calls along the document's links.

It fails on any 5xx; on an answer the document does not describe (status code, content type,
headers, body schema: errors included, see web/errors.py); on an invalid request that is
accepted or a valid one that is refused; on an error that is not the error shape
(tests/fuzz_hooks.py). A new operation is fuzzed as soon as it is in the document.

The run is schemathesis' own command line, as a developer would run it by hand, configured by
schemathesis.toml (seed and budget). Its failures are printed with a curl line that replays them.
"""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import ROOT, Web


def test_every_operation_withstands_the_fuzzer(start: Callable[..., Any], tmp_path: Path) -> None:
    # Its own web: the fuzzer's failed logins, all from one address, must not lock it out.
    unlimited = "100000/minute"
    web: Web = start(
        "web", LOGIN_FAILURES_PER_ACCOUNT=unlimited, LOGIN_FAILURES_PER_ADDRESS=unlimited
    )
    web.wait_ready()
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{web.url}/openapi.json",
            "--report=json",
            f"--report-json-path={report}",
        ],
        cwd=ROOT,  # where schemathesis.toml and tests.fuzz_hooks are found
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    run = json.loads(report.read_text())
    operations = run["operations"]
    assert operations["tested"] == operations["total"] >= 8, operations
    assert run["phases"]["fuzzing"]["status"] == run["phases"]["stateful"]["status"] == "success"
    # Its session cannot open these: they answer a login that owes a second factor (its own
    # cookie, from a password login of an account with one), which the fuzzer never has.
    pending_only = {"POST /api/v1/passkeys/second-factor/options"}
    assert not set(run["warnings"]["missing_auth"]) - pending_only, "the fuzzer could not log in"
    print(f"fuzzer: {run['test_cases']['generated']} cases in {run['running_time']:.1f} s")
