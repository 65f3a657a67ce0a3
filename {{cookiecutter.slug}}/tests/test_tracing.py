"""Traces: one OpenTelemetry trace from a request through the task it enqueued, with their SQL
statements and Redis calls, exported over OTLP/HTTP by real web, worker and clock processes to
a receiver these tests run (see `Collector` in conftest.py), and the same ids in the log lines."""

import json
import re
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import (
    Collector,
    Outcome,
    Process,
    Span,
    TcpProxy,
    Web,
    free_port,
    tracing_env,
    wait_until,
)
from .test_dead_letters import jobs, results

SERVICE = "{{ cookiecutter.slug }}"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    """One receiver for the module, as the web processes its tests share export to it: each
    test finds its own spans by the ids of its requests, tasks and traces."""
    receiver = Collector()
    yield receiver
    receiver.close()


def traced_web(shared: Callable[..., Any], collector: Collector, broker: str) -> Web:
    """The module's web on `broker`, tracing, shared by the tests that only make requests of it
    (what they watch are their own workers)."""
    web: Web = shared("web", BROKER_URL=broker, **tracing_env(collector))
    return web


def post_note(web: Web, body: str, request_id: str, user: httpx.Client | None = None) -> int:
    """Post a note as `user`, or as a new account's session."""
    client = user or web.signed_in()
    response = client.post(
        "/api/v1/notes",
        json={"title": "traced", "body": body},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def enriched(db: psycopg.Connection[Any], note_id: int) -> bool:
    row = db.execute("SELECT enriched_at FROM notes WHERE id = %s", [note_id]).fetchone()
    return bool(row and row[0])


def db_system(span: Span) -> str | None:
    return span.attributes.get("db.system") or span.attributes.get("db.system.name")


def statement(span: Span) -> str:
    return str(span.attributes.get("db.statement") or span.attributes.get("db.query.text") or "")


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    """The span's parent, its parent's parent ... up to the root; fails on a missing link."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id:
        assert span.parent_id in by_id, f"{span.name}: parent {span.parent_id} never arrived"
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def run_span(request_id: str) -> Callable[[Span], bool]:
    return lambda s: s.name == "run/notes.enrich" and s.attributes.get("request_id") == request_id


def test_request_and_its_task_are_one_trace_with_their_sql_and_redis_calls(
    start: Callable[..., Any],
    shared: Callable[..., Any],
    broker: str,
    collector: Collector,
    db: psycopg.Connection[Any],
) -> None:
    web = traced_web(shared, collector, broker)
    # Ids of this run's own: the module's collector has the other broker's spans as well.
    rid, read_rid = (f"req-trace-{name}-{broker.split(':')[0]}" for name in ("0001", "read"))
    worker: Process = start("worker", BROKER_URL=broker, **tracing_env(collector))
    user = web.signed_in()
    note_id = post_note(web, "one two three", rid, user)
    wait_until(lambda: enriched(db, note_id), timeout=20)

    read = user.get(f"/api/v1/notes/{note_id}", headers={"X-Request-ID": read_rid})
    assert read.status_code == 200
    # Named by route template, not by the path it was asked for.
    get = collector.wait_for(lambda s: s.attributes.get("request_id") == read_rid)
    assert (get.kind, get.name) == ("SERVER", "GET /api/v1/notes/{note_id}")
    assert get.attributes["http.route"] == "/api/v1/notes/{note_id}"

    run = collector.wait_for(run_span(rid))
    # The worker's own statements arrive with or after its run span.
    wait_until(lambda: any("FOR UPDATE" in statement(s) for s in collector.trace(run.trace_id)), 10)
    spans = collector.trace(run.trace_id)
    [server] = [s for s in spans if s.kind == "SERVER"]
    [publish] = [s for s in spans if s.name == "apply_async/notes.enrich"]

    # The request: named by its route template, tagged with its request id, the trace's root.
    assert server.name == "POST /api/v1/notes"
    assert server.attributes["http.route"] == "/api/v1/notes"
    assert server.attributes["request_id"] == rid
    assert server.parent_id == ""
    # Its enqueue is its child; the task's run is the enqueue's child, in another process.
    assert (publish.kind, publish.parent_id) == ("PRODUCER", server.span_id)
    assert (run.kind, run.parent_id) == ("CONSUMER", publish.span_id)
    assert run.attributes["celery.task_name"] == "notes.enrich"
    assert server.instance.startswith("web-")
    assert run.instance.startswith("worker-")
    assert {s.resource["service.name"] for s in spans} == {SERVICE}

    # The SQL and Redis calls of both sides are in the same trace, under the right span.
    web_sql = [s for s in spans if db_system(s) == "postgresql" and s.instance == server.instance]
    task_sql = [s for s in spans if db_system(s) == "postgresql" and s.instance == run.instance]
    assert any(statement(s).startswith("INSERT INTO notes") for s in web_sql)
    assert any("FOR UPDATE" in statement(s) for s in task_sql)
    assert any(statement(s).startswith("UPDATE notes") for s in task_sql)
    assert all(server in ancestors(s, spans) for s in web_sql)
    assert all(run in ancestors(s, spans) for s in task_sql)
    redis_calls = [s for s in spans if db_system(s) == "redis"]
    assert any(s.parent_id == server.span_id for s in redis_calls)  # the rate limiter's
    assert all(server in ancestors(s, spans) for s in redis_calls)
    if broker.startswith("redis"):  # the enqueue's own broker calls are under the enqueue
        assert any(s.name == "LPUSH" and s.parent_id == publish.span_id for s in redis_calls)

    # The log lines of both processes carry the trace id, and the span each was written in.
    [access] = [r for r in web.records() if r.get("request_id") == rid]
    assert (access["trace_id"], access["span_id"]) == (server.trace_id, server.span_id)
    # This note's line: the queue is the session's, and may hold an earlier test's task.
    [done] = [
        r for r in worker.records() if r["event"] == "note enriched" and r["note_id"] == note_id
    ]
    assert (done["trace_id"], done["span_id"]) == (run.trace_id, run.span_id)
    task_lines = [r for r in worker.records() if r.get("task_id") == done["task_id"]]
    in_span = [r for r in task_lines if r["event"] != "task received"]  # the consumer's line
    assert len(in_span) >= 2  # ours and Celery's "succeeded"
    assert all(r["trace_id"] == run.trace_id for r in in_span)


def test_probes_and_scrapes_make_no_spans(start: Callable[..., Any], collector: Collector) -> None:
    web: Web = start("web", **tracing_env(collector))
    web.wait_ready()  # polls /readyz, whose every answer asks PostgreSQL and Redis
    for path in ("/livez", "/readyz", "/metrics"):
        assert web.client.get(path).status_code == 200
    # Spans are exported in the order they end: once this request's is here, theirs would be.
    after = web.client.get("/api/v1/session", headers={"X-Request-ID": "req-after-probes"})
    assert after.status_code == 401
    span = collector.wait_for(lambda s: s.attributes.get("request_id") == "req-after-probes")
    web_spans = [s for s in collector.spans if s.instance == span.instance]
    assert {(s.trace_id, s.attributes.get("url.path")) for s in web_spans if not s.parent_id} == {
        (span.trace_id, "/api/v1/session")
    }
    assert [r for r in web.records() if r.get("path") == "/readyz"]  # still logged


FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT_SECONDS": "5",  # the Redis broker's redelivery delay
    "TASK_TIME_LIMIT_SECONDS": "4",
    "TASK_RETRY_BACKOFF_SECONDS": "0.2",
    "TASK_RETRY_BACKOFF_MAX_SECONDS": "0.5",
    "TASK_MAX_RETRIES": "100",
    "DB_TIMEOUT_SECONDS": "1",
    "WORKER_CONCURRENCY": "1",
}


def test_task_stays_in_the_request_trace_after_a_retry_and_a_redelivery(
    start: Callable[..., Any],
    shared: Callable[..., Any],
    broker: str,
    collector: Collector,
    db: psycopg.Connection[Any],
    migrated: dict[str, str],
) -> None:
    env = {"BROKER_URL": broker, **tracing_env(collector), **FAST_REDELIVERY}
    web = traced_web(shared, collector, broker)
    rid = f"req-trace-0002-{broker.split(':')[0]}"  # the other broker's run has its own
    note_id = post_note(web, "a b", rid)
    # The note's row is locked: every attempt times out on it and is retried.
    with psycopg.connect(migrated["DATABASE_URL"]) as holder:
        holder.execute("SELECT 1 FROM notes WHERE id = %s FOR UPDATE", [note_id])
        first = start("worker", OTEL_RESOURCE_ATTRIBUTES="test.worker=first", **env)
        # Its start and an attempt or two first: 20 s was too short once, with two runs at once.
        wait_until(
            lambda: [r for r in first.records() if r["event"] == "retrying"],
            40,
            describe=lambda: f"a retry; the worker's last lines: {first.lines[-10:]}",
        )
        time.sleep(0.6)  # the retry's spans exported; the next attempt queued or running
        first.kill_group()  # SIGKILL: its message goes to the next worker
    second = start("worker", OTEL_RESOURCE_ATTRIBUTES="test.worker=second", **env)
    wait_until(lambda: enriched(db, note_id), timeout=30)

    succeeded = collector.wait_for(
        lambda s: run_span(rid)(s) and s.resource.get("test.worker") == "second"
    )
    spans = collector.trace(succeeded.trace_id)
    chain = ancestors(succeeded, spans)  # every link up to the request arrived
    [server] = [s for s in spans if s.kind == "SERVER"]
    assert chain[-1] == server
    assert server.attributes["request_id"] == rid
    # Its parent is the retry that the first worker published from a failed run of its own.
    assert chain[0].name == "apply_async/notes.enrich"
    assert chain[1].name == "run/notes.enrich"
    assert {s.resource.get("test.worker") for s in chain[:2]} == {"first"}
    assert chain[1].attributes["request_id"] == rid
    assert any(r["event"] == "note enriched" for r in second.records())


def test_the_clocks_enqueues_start_traces_of_their_own(
    start: Callable[..., Any], collector: Collector
) -> None:
    worker = start("worker", **tracing_env(collector))
    clock = start(
        "clock",
        HEARTBEAT_SECONDS="1",
        CLOCK_LOCK_TIMEOUT_SECONDS="5",
        **tracing_env(
            collector,
            OTEL_SERVICE_NAME="notes-clock",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test",
        ),
    )

    def heartbeat_runs() -> list[Span]:
        runs = [s for s in collector.spans if s.name == "run/clock.heartbeat"]
        return runs if len(runs) >= 2 else []

    def parent(span: Span) -> Span:
        return collector.wait_for(lambda s: s.span_id == span.parent_id, 5)

    runs = wait_until(heartbeat_runs, timeout=30)[:2]
    for run in runs:
        send = parent(run)
        assert send.name == "apply_async/clock.heartbeat"
        assert send.parent_id == ""  # a root: no request behind it
        assert send.trace_id == run.trace_id
        # The standard variables are the SDK's: the name and attributes they set are kept.
        assert send.resource["service.name"] == "notes-clock"
        assert send.resource["deployment.environment.name"] == "test"
        assert send.instance.startswith("clock-")
        assert run.resource["service.name"] == SERVICE
    assert runs[0].trace_id != runs[1].trace_id
    assert clock.stop(signal.SIGTERM) == 0
    # The clock's line about each enqueue, and the worker's about each run, carry its trace id.
    for run in runs:
        task_id = run.attributes["messaging.message.id"]
        [sent] = [r for r in clock.records() if r.get("task_id") == task_id]
        assert (sent["event"], sent["trace_id"]) == ("task sent", run.trace_id)
        stored = [r for r in worker.records() if r.get("task_id") == task_id and "trace_id" in r]
        assert {r["trace_id"] for r in stored} == {run.trace_id}


def test_a_redrive_is_a_new_trace_linked_to_the_one_the_task_failed_in(
    start: Callable[..., Any],
    collector: Collector,
    queue_env: dict[str, str],
    db: psycopg.Connection[Any],
) -> None:
    failed_in = secrets.token_hex(16)
    row = db.execute(
        "INSERT INTO dead_letters (task_id, task_name, args, kwargs, error, trace_parent)"
        " VALUES (%s, 'notes.enrich', '[2147483000]', '{}', 'boom', %s) RETURNING id",
        [secrets.token_hex(16), f"00-{failed_in}-{secrets.token_hex(8)}-01"],
    ).fetchone()
    assert row is not None
    env = tracing_env(collector, **queue_env)
    (redriven,) = results(jobs(env, "dead", "redrive", str(row[0])))
    assert redriven["redriven"] is True
    start("worker", **env)
    task_id = redriven["redriven_task_id"]
    ran = collector.wait_for(
        lambda s: s.name == "run/notes.enrich" and s.attributes["messaging.message.id"] == task_id
    )
    assert ran.trace_id != failed_in
    root = collector.wait_for(lambda s: s.trace_id == ran.trace_id and s.parent_id == "", 5)
    assert (root.name, root.links) == ("redrive", (failed_in,))
    assert root.instance.startswith("admin-")


def start_post(web: Web, payload: bytes, request_id: str) -> socket.socket:
    """Send a signed-in POST's headers and half its body; `finish_post` sends the other half."""
    cookie = "; ".join(f"{name}={value}" for name, value in web.signed_in().cookies.items())
    sock = socket.create_connection(("127.0.0.1", int(web.env["PORT"])))
    head = (
        f"POST /api/v1/notes HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Cookie: {cookie}\r\nX-Request-ID: {request_id}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    sock.sendall(head + payload[: len(payload) // 2])
    return sock


def finish_post(sock: socket.socket, payload: bytes) -> int:
    sock.sendall(payload[len(payload) // 2 :])
    sock.settimeout(10)
    status_line = sock.makefile("rb").readline().decode()
    sock.close()
    return int(status_line.split()[1])


def test_spans_still_batched_at_sigterm_are_exported_before_exit(
    start: Callable[..., Any], collector: Collector, db: psycopg.Connection[Any]
) -> None:
    # Nothing is exported on the batch schedule here: whatever arrives is the exit's flush.
    env = tracing_env(collector, OTEL_BSP_SCHEDULE_DELAY="600000")
    web: Web = start("web", WEB_CONCURRENCY="2", **env)
    worker: Process = start("worker", **env)
    web.wait_ready()
    payload = b'{"title": "cut", "body": "in flight at sigterm"}'
    sock = start_post(web, payload, "req-trace-cut1")
    time.sleep(0.3)  # the server is reading the body
    web.send(signal.SIGTERM)
    assert finish_post(sock, payload) == 201
    assert web.popen.wait(15) == 0
    server = collector.wait_for(lambda s: s.attributes.get("request_id") == "req-trace-cut1", 5)
    assert server.name == "POST /api/v1/notes"
    assert server.instance.startswith("web-")  # one of the spawned children, its own provider

    # The task it enqueued ran in a pool child; the child exits at the worker's SIGTERM.
    note_id = db.execute("SELECT max(id) FROM notes WHERE title = 'cut'").fetchone()[0]  # type: ignore[index]
    wait_until(lambda: enriched(db, note_id), timeout=20)
    assert not [s for s in collector.spans if run_span("req-trace-cut1")(s)]  # still batched
    assert worker.stop(signal.SIGTERM) == 0
    run = collector.wait_for(run_span("req-trace-cut1"), 5)
    assert run.trace_id == server.trace_id


def test_a_recycled_pool_child_exports_its_spans_before_it_goes(
    start: Callable[..., Any],
    shared: Callable[..., Any],
    collector: Collector,
    redis_url: str,
    db: psycopg.Connection[Any],
) -> None:
    # The child is replaced after each task; nothing is exported on the batch schedule.
    env = tracing_env(collector, OTEL_BSP_SCHEDULE_DELAY="600000")
    web = traced_web(shared, collector, redis_url)
    worker: Process = start("worker", WORKER_CONCURRENCY="1", WORKER_MAX_TASKS_PER_CHILD="1", **env)
    note_id = post_note(web, "recycled", "req-trace-recy")
    wait_until(lambda: enriched(db, note_id), timeout=20)
    run = collector.wait_for(run_span("req-trace-recy"), 10)
    assert worker.popen.poll() is None  # the worker itself still runs: only its child went
    assert any(s.parent_id == run.span_id and db_system(s) for s in collector.spans)


@pytest.mark.parametrize("collector_fault", ["refused", "stalled"])
def test_an_unreachable_collector_changes_no_answer_and_no_exit_code(
    start: Callable[..., Any],
    collector_fault: str,
    proxy: Callable[[str], TcpProxy],
    db: psycopg.Connection[Any],
) -> None:
    if collector_fault == "refused":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    else:
        silent = proxy("redis://127.0.0.1:6379")
        silent.stall()  # accepts every connection, never answers
        endpoint = f"http://127.0.0.1:{silent.port}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    web: Web = start("web", **env)
    worker: Process = start("worker", **env)
    web.wait_ready()
    began = time.monotonic()
    user = web.signed_in()
    note_id = post_note(web, "still works", "req-trace-dead", user)
    for _ in range(30):
        assert user.get(f"/api/v1/notes/{note_id}").status_code == 200
    assert time.monotonic() - began < 5  # a few ms each: nothing waits for the collector
    wait_until(lambda: enriched(db, note_id), timeout=20)

    signalled = time.monotonic()
    assert web.stop(signal.SIGTERM) == 0
    assert worker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - signalled < 10  # the flush at exit gives up after 2 s each
    # Visible, and not a flood: a few warning lines, however many spans were dropped.
    for process in (web, worker):
        warnings = [
            r
            for r in process.records()
            if r["level"] in {"warning", "error"}
            and re.match(r"opentelemetry|{{ cookiecutter.package }}\.core\.tracing", r["logger"])
        ]
        assert 1 <= len(warnings) <= 12, warnings


def test_bad_tracing_config_is_named_at_start(
    migrated: dict[str, str], load_config: Callable[[dict[str, str]], Outcome]
) -> None:
    env = {
        **migrated,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    code, output, _ = load_config(env)  # as every process reads it (test_settings.py starts them)
    assert code == 78, output
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in json.loads(output)["event"]


@pytest.mark.parametrize(
    ("otel", "traced"),
    [
        ({}, False),  # no endpoint: off
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector"}, True),  # the control: the check sees it
    ],
    ids=["no-endpoint", "sdk-disabled", "on"],
)
def test_with_tracing_off_nothing_of_opentelemetry_is_imported(
    start: Callable[..., Any], collector: Collector, otel: dict[str, str], traced: bool
) -> None:
    if otel.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "collector":
        otel = tracing_env(collector)
    # PYTHONVERBOSE: the interpreter writes a line to stderr for every module it imports.
    web: Web = start("web", PYTHONVERBOSE="1", **otel)
    web.wait_ready()
    user = web.signed_in()
    note_id = post_note(web, "off", "req-trace-off1", user)
    assert user.get(f"/api/v1/notes/{note_id}").status_code == 200
    assert web.client.get("/api/v1/session").status_code == 401
    assert web.stop(signal.SIGTERM) == 0
    imported = {m[1] for line in web.stderr if (m := re.match(r"import '([\w.]+)'", line))}
    assert "fastapi" in imported  # the listing works
    # FastAPI itself imports the OpenTelemetry API, whose calls do nothing without the SDK.
    sdk = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")
    assert any(name.startswith(sdk) for name in imported) is traced
    assert ("{{ cookiecutter.package }}.core.tracing" in imported) is traced
