"""The least tracing can cost a session read: the OpenTelemetry SDK's own work for its spans.

    <project>/.venv/bin/python bench/span_floor.py     # a few seconds; prints one JSON object

Run by bench/run.py in the rendered project's venv (the SDK and exporter its locks pin). A traced
`GET /api/v1/session` exports two spans: the server span (web/server_span.py) and redis-py's
EVALSHA span under it, with the names and attributes below (as tests/test_tracing.py's receiver
decodes them). This script makes those two spans with the SDK alone, no web, no
instrumentation, no export thread:

- `record_us`: start both, set what the instrumentations set (the server span's attributes all
  at its end, as server_span.py does), end both, handed to a span processor that only keeps them;
- `encode_us`: what the OTLP/HTTP exporter does with them before its POST, in batches of 512 as
  the batch processor hands them over: encode to protobuf, serialise.

Each figure is CPU time of this thread per read (two spans), the best of 7 runs of 5,000 reads.
Whatever the service does around these calls, tracing on cannot cost less than their sum.
"""

import json
import time
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

READS = 5_000
RUNS = 7
BATCH = 512  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default

SERVER = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "url.path": "/api/v1/session",
    "request_id": "9d0d3604a8fcd565634662bcecc4b415",
    "http.route": "/api/v1/session",
    "http.response.status_code": 200,
}
REDIS = {
    "db.system": "redis",
    "db.statement": "EVALSHA ? ? ? ? ? ?",
    "db.redis.args_length": 7,
    "net.peer.name": "127.0.0.1",
    "net.peer.port": 6379,
    "net.transport": "ip_tcp",
    "db.redis.database_index": 0,
}


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def best_cpu_us(work: Callable[[], None], per: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.thread_time_ns()
        work()
        best = min(best, (time.thread_time_ns() - started) / per / 1000)
    return best


def main() -> None:
    resource = Resource.create({"service.name": "acme-notes", "service.instance.id": "web-1"})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    kept = Keep()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("acme_notes.web.server_span")
    redis_tracer = provider.get_tracer("opentelemetry.instrumentation.redis")

    def read() -> None:
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as span:
            with redis_tracer.start_as_current_span(
                "EVALSHA", kind=SpanKind.CLIENT, attributes=REDIS
            ):
                pass
            span.update_name("GET /api/v1/session")
            span.set_attributes(SERVER)

    def reads() -> None:
        kept.spans.clear()
        for _ in range(READS):
            read()

    record_us = best_cpu_us(reads, READS)
    spans = list(kept.spans)

    def encode() -> None:
        for start in range(0, len(spans), BATCH):
            encode_spans(spans[start : start + BATCH]).SerializeToString()

    encode_us = best_cpu_us(encode, READS)
    print(json.dumps({"spans_per_read": 2, "record_us": record_us, "encode_us": encode_us}))


if __name__ == "__main__":
    main()
