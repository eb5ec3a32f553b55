"""The baselines: what the SDK's costs are read against (a call, an append, a POST, a span)."""

from __future__ import annotations

import gc
import statistics
import time
from collections import deque
from typing import Any

from .common import DECISION_BODY, JSON_HEADERS, Result, percentile, raw_post


def baseline_call(n: int) -> Result:
    """A bare Python call of a function that returns None, in a `for` loop (loop included)."""

    def f() -> None:
        return None

    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    call = time.perf_counter() - t0
    return {"calls": n, "ns_per_call": call / n * 1e9, "loop_ns": loop / n * 1e9}


def baseline_deque_append(n: int) -> Result:
    """`deque.append` of a small pre-built dict: the floor of what `record()` can be."""
    items = [{"name": "bench.record", "seq": i} for i in range(n)]
    queue: deque[dict[str, Any]] = deque()
    gc.collect()
    t0 = time.perf_counter()
    for item in items:
        queue.append(item)
    return {"calls": n, "ns_per_call": (time.perf_counter() - t0) / n * 1e9}


def baseline_httpx_post(url: str, n: int) -> Result:
    """A raw httpx POST of a small JSON body to the sink's ``/echo`` (`raw_post`), answer read
    as JSON, on a keep-alive connection."""
    import httpx

    latencies: list[float] = []
    with httpx.Client(timeout=10.0) as raw:
        for i in range(n + 50):
            t0 = time.perf_counter()
            raw.send(raw_post(url, DECISION_BODY, JSON_HEADERS)).json()
            if i >= 50:
                latencies.append(time.perf_counter() - t0)
    return {
        "calls": n,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
    }


def baseline_otel_span(n: int) -> Result:
    """One OpenTelemetry SDK span (start + end) through a BatchSpanProcessor whose exporter
    discards: the telemetry cost users already accept. CPU includes the processor's thread
    until `force_flush()`."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        exported = 0

        def export(self, spans: Any) -> SpanExportResult:
            Discard.exported += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench")
    for _ in range(1_000):
        tracer.start_span("warmup").end()
    provider.force_flush()
    Discard.exported = 0
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        span = tracer.start_span("tool_call")
        span.end()
    wall = time.perf_counter() - t0
    provider.force_flush()
    cpu = time.process_time() - cpu0
    provider.shutdown()
    return {
        "spans": n,
        "caller_us_per_span": wall / n * 1e6,
        "cpu_us_per_span": cpu / n * 1e6,
        "exported": Discard.exported,
    }
