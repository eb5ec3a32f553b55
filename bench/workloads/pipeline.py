"""W1 and W3: `record()` on the calling thread, and the delivered throughput behind it."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from .._sink import SinkClient
from .common import (
    DELIVERY_TIMEOUT_S,
    WARMUP_EVENTS,
    LogCounter,
    Result,
    Steps,
    event,
    options,
    run_variant,
    sdk_delivered,
    wait_delivered,
    warm_up,
)


def _measure(
    record: Callable[[Any], None],
    events: list[Any],
    sink: SinkClient,
    dropped: Callable[[], int],
) -> Result:
    n = len(events)
    gc.collect()
    cpu0, thread0 = time.process_time(), time.thread_time()
    start_mono, t0 = time.monotonic(), time.perf_counter()
    for item in events:
        record(item)
    t1, thread1 = time.perf_counter(), time.thread_time()
    stats = wait_delivered(sink, n, dropped, DELIVERY_TIMEOUT_S)
    cpu1 = time.process_time()
    delivered = stats["events_unique"]
    last_ack = stats["last_ack"] or time.monotonic()
    return {
        "recorded": n,
        "delivered": delivered,
        "dropped": dropped(),
        "duplicates": stats["duplicates"],
        "caller_us_per_event": (t1 - t0) / n * 1e6,
        "caller_cpu_us_per_event": (thread1 - thread0) / n * 1e6,
        "cpu_us_per_delivered": (cpu1 - cpu0) / max(1, delivered) * 1e6,
        "record_s": t1 - t0,
        "end_to_end_s": last_ack - start_mono,
        "throughput_eps": delivered / max(1e-9, last_ack - start_mono),
        "requests": stats["accepted_requests"],
        "max_events_per_request": stats["max_events_per_request"],
        "gzipped_requests": stats["gzipped_requests"],
        "wire_bytes_per_event": stats["wire_bytes"] / max(1, delivered),
    }


def pipeline(url: str, n: int, variant: str) -> Result:
    """Record `n` pre-built events as fast as possible, then wait until the sink has them all.

    The queue has room for all of them, so every recorded event can be delivered: a drop here
    is a finding, not load shedding. The events are built before the clock starts: the caller
    time is `record()` alone.
    """
    sink = SinkClient(url)
    client_options = options(url, queue_capacity=n + 1_000)
    events = [event("bench.record", i) for i in range(n)]

    def steps(client_class: Any) -> Steps:
        client = client_class(client_options)
        with LogCounter.attached() as logs:
            warm_up(client.record, sink)
            dropped0 = client.dropped_count
            result = _measure(client.record, events, sink, lambda: client.dropped_count - dropped0)
            result["sdk_delivered"] = sdk_delivered(client, WARMUP_EVENTS)
            yield client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    return run_variant(variant, steps)


def w1_record(url: str, n: int, variant: str) -> Result:
    """W1: `record()` on the calling thread, and the process CPU per delivered event."""
    return pipeline(url, n, variant)


def w3_throughput(url: str, n: int, variant: str) -> Result:
    """W3: delivered events/s, from the first `record()` to the sink's last acknowledgement."""
    return pipeline(url, n, variant)
