"""Observability: Prometheus metrics scraped from real processes and parsed as Prometheus would."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from .conftest import PLAIN_HTTP, Process, Web, broker_client, wait_until


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at `url`, keyed by (name, labels)."""
    text = httpx.get(url, timeout=5, verify=PLAIN_HTTP).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_web_counts_requests_by_route_template_and_status(web: Web) -> None:
    user = web.signed_in()
    for note_id in (111111, 222222):
        user.get(f"/api/v1/notes/{note_id}")
    web.client.get("/no/such/page")
    samples = scrape(f"{web.url}/metrics")
    route = "/api/v1/notes/{note_id}"
    assert value(samples, "http_requests_total", method="GET", route=route, status="404") >= 2
    assert value(samples, "http_requests_total", method="GET", route="unmatched", status="404") >= 1
    assert value(samples, "http_request_duration_seconds_count", method="GET", route=route) >= 2
    assert ("http_requests_in_progress", frozenset()) in samples
    assert not any("111111" in str(labels) for _, labels in samples)  # no raw paths as labels


def half_made_file(tmp: Path) -> None:
    """What a process leaves in PROMETHEUS_MULTIPROC_DIR for a moment as it starts counting: its
    file, still empty (prometheus_client creates it, then sizes it). The process under test put
    its folder in `tmp` (TMPDIR)."""
    [folder] = wait_until(lambda: list(tmp.glob("metrics-*")), 20)  # made as the process starts
    (folder / "counter_4242424.db").touch()


def test_metrics_add_up_across_web_processes(start: Callable[..., Any], tmp_path: Path) -> None:
    web: Web = start("web", WEB_CONCURRENCY="2", TMPDIR=str(tmp_path))
    web.wait_ready()
    half_made_file(tmp_path)  # a scrape skips it rather than failing (core/metrics.py)
    for _ in range(30):
        # A new connection each: spread over both processes.
        httpx.get(f"{web.url}/livez", verify=PLAIN_HTTP)
    # Whichever process answers the scrape, it reports the total of both.
    for _ in range(4):
        samples = scrape(f"{web.url}/metrics")
        assert (
            value(samples, "http_requests_total", method="GET", route="/livez", status="200") == 30
        )


def test_worker_exposes_task_queue_and_heartbeat_metrics(
    start: Callable[..., Any],
    web: Web,
    db: psycopg.Connection[Any],
    migrated: dict[str, str],
    tmp_path: Path,
) -> None:
    worker: Process = start("worker", TMPDIR=str(tmp_path))
    metrics_url = f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"
    note_id = web.signed_in().post("/api/v1/notes", json={"title": "m", "body": "x"}).json()["id"]
    client = broker_client(migrated)
    client.send_task("clock.heartbeat", queue=migrated["TASK_QUEUE"])
    client.close()
    # A pool process making its file as the scrape reads the folder: seen with two runs at once,
    # the scrape failed whole (500) where it should leave out what holds no sample yet.
    half_made_file(tmp_path)
    wait_until(
        lambda: db.execute(
            "SELECT 1 FROM notes WHERE id = %s AND enriched_at IS NOT NULL", [note_id]
        ).fetchone(),
        timeout=20,
    )

    # A task is counted once it has returned, a moment after its commit: the note can be
    # enriched and the heartbeat counted before the enrichment is (seen with two runs at once).
    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(metrics_url)
        done = [
            value(samples, "celery_tasks_total", task=task, outcome="success")
            for task in ("clock.heartbeat", "notes.enrich")
        ]
        return samples if min(done) >= 1 else None

    samples = wait_until(counted, timeout=10)
    assert value(samples, "celery_task_duration_seconds_count", task="notes.enrich") >= 1
    assert value(samples, "heartbeat_last_run_timestamp_seconds") > 1.7e9
    assert ("celery_queue_depth", frozenset()) in samples
