"""W4 and W7: an outage and a shutdown with a backlog: memory, accounting, `close()`.

Both record `n` events as fast as possible, then `close(close_timeout)`, and account for every
event afterwards: delivered (counted by the sink) or dropped (counted by the SDK), exactly once,
and nothing arriving after `close()` returned.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Any

from .._sink import SinkClient
from .common import (
    WARMUP_EVENTS,
    LogCounter,
    Result,
    Steps,
    options,
    run_variant,
    sdk_delivered,
    warm_up,
)
from .memory import calibrate_event_bytes, memory_bound_mb, peak_mb, reset_peak, rss_mb

SETTLE_MAX_S = 60.0
"""After close(), how long an SDK thread that is still running may take to finish sending
(0.1.0's sends its whole backlog in one request after close() returned)."""
CLOSE_GRACE_S = 0.25
"""How far past its timeout `close()` may return and still count as within it (scheduling
slack on a noisy 2-core machine; the SDK itself allows 0.2 s to join its thread)."""
W7_QUEUE_CAPACITY = 1_000_000
"""W7 records 800k events with room for all of them: the backlog at close() is the test."""


def _sdk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "tracengent" in t.name and t.is_alive()]


def _settle(sink: SinkClient, quiet_s: float, settle_max_s: float) -> dict[str, Any]:
    """After close(): let whatever the SDK still sends arrive, so the sink can tell."""
    alive = _sdk_threads()
    deadline = time.monotonic() + settle_max_s
    for thread in alive:
        thread.join(max(0.0, deadline - time.monotonic()))
    sink.wait_quiet(quiet_s, max(quiet_s, deadline - time.monotonic()))
    return {
        "sdk_threads_alive_after_close": len(alive),
        "sdk_threads_alive_after_settle": len(_sdk_threads()),
    }


@dataclass(frozen=True)
class _Backlog:
    """What sets W4 and W7 apart."""

    name: str
    """The recorded events' name."""
    outage: bool
    """Whether the ingest answers 503 from the first recorded event on."""
    quiet_s: float
    """After close(): how long no request may arrive before the sink's count is final."""


OUTAGE = _Backlog("bench.outage", outage=True, quiet_s=0.5)
SHUTDOWN = _Backlog("bench.backlog", outage=False, quiet_s=1.0)


def _backlog_run(
    kind: _Backlog,
    url: str,
    n: int,
    variant: str,
    close_timeout: float,
    queue_capacity: int | None,
    settle_max_s: float,
) -> Result:
    """Record `n` events as fast as possible (built in the loop, so the SDK's memory is what
    grows), then `close(close_timeout)`; account for every event afterwards."""
    sink = SinkClient(url)
    sink.set_mode(202)
    overrides = {} if queue_capacity is None else {"queue_capacity": queue_capacity}
    client_options = options(url, **overrides)
    capacity = client_options.queue_capacity

    def steps(client_class: Any) -> Steps:
        from tracengent import AgentEvent

        client = client_class(client_options)
        marks: dict[str, Any] = {}
        with LogCounter.attached() as logs:
            warm_up(client.record, sink)
            if kind.outage:
                sink.set_mode(503)
            gc.collect()
            marks["dropped0"] = client.dropped_count
            marks["hwm_reset"] = reset_peak()
            marks["rss0"] = rss_mb()
            marks["start"] = time.monotonic()
            marks["t0"] = time.perf_counter()
            for i in range(n):
                client.record(AgentEvent(name=kind.name, attributes={"seq": i, "user": "u_1"}))
            marks["record_s"] = time.perf_counter() - marks["t0"]
            marks["dropped_before_close"] = client.dropped_count - marks["dropped0"]
            marks["close0"] = time.perf_counter()
            yield client.close(close_timeout)
            marks["close_s"] = time.perf_counter() - marks["close0"]
            marks["closed_at"] = time.monotonic()
            marks["peak"] = peak_mb()
            marks["dropped"] = client.dropped_count - marks["dropped0"]
            marks["sdk_delivered"] = sdk_delivered(client, WARMUP_EVENTS)
            marks["lines_at_close"] = logs.lines
            marks.update(_settle(sink, kind.quiet_s, settle_max_s))
            marks["peak_final"] = peak_mb()
            marks["dropped_final"] = client.dropped_count - marks["dropped0"]
        marks["log_lines_final"] = logs.lines
        marks["log_samples"] = logs.samples
        return marks

    run = run_variant(variant, steps)
    if "skipped" in run:
        return run
    stats = sink.stats(since=run["closed_at"])
    sink.set_mode(202)
    held = min(n, capacity)
    per_event = calibrate_event_bytes(url, min(held, 20_000))
    delivered = stats["events_unique"]
    dropped = run["dropped"]
    outage_s = run["closed_at"] - run["start"]
    result: Result = {
        "recorded": n,
        "delivered": delivered,
        "dropped": dropped,
        "dropped_before_close": run["dropped_before_close"],
        "dropped_final": run["dropped_final"],
        "sdk_delivered": run["sdk_delivered"],
        "duplicates": stats["duplicates"],
        "events_after_close": stats["events_after"],
        "requests_after_close": stats["requests_after"],
        "accounting_exact": (
            delivered + dropped == n
            and stats["duplicates"] == 0
            and stats["events_after"] == 0
            and run["dropped_final"] == dropped
        ),
        "record_s": run["record_s"],
        "caller_us_per_event": run["record_s"] / n * 1e6,
        "close_timeout_s": close_timeout,
        "close_s": run["close_s"],
        "close_limit_s": close_timeout + CLOSE_GRACE_S,
        "close_within_timeout": run["close_s"] <= close_timeout + CLOSE_GRACE_S,
        "queue_capacity": capacity,
        "peak_rss_mb": max(0.0, run["peak_final"] - run["rss0"]),
        "peak_rss_at_close_mb": max(0.0, run["peak"] - run["rss0"]),
        "peak_rss_measured_from_reset": run["hwm_reset"],
        "event_bytes_queued": per_event,
        "queue_equivalent_mb": held * per_event / 2**20,
        "memory_bound_mb": memory_bound_mb(per_event, held),
        "log_lines": run["log_lines_final"],
        "log_lines_at_close": run["lines_at_close"],
        "log_samples": run["log_samples"],
        "outage_s": outage_s,
        "log_lines_per_s": run["log_lines_final"] / max(1e-9, outage_s),
        "ingest_requests": stats["ingest_requests"],
        "max_events_per_request": stats["max_events_per_request"],
        "events_refused": stats["events_refused"],
        "sdk_threads_alive_after_close": run["sdk_threads_alive_after_close"],
        "sdk_threads_alive_after_settle": run["sdk_threads_alive_after_settle"],
    }
    result["memory_within_bound"] = result["peak_rss_mb"] <= result["memory_bound_mb"]
    return result


def w4_outage(
    url: str,
    n: int,
    variant: str,
    close_timeout: float = 5.0,
    queue_capacity: int | None = None,
    settle_max_s: float = SETTLE_MAX_S,
) -> Result:
    """W4: the ingest answers 503 while `n` events are recorded and while `close()` runs.

    The queue is the SDK's default (10,000) unless `queue_capacity` says otherwise (the quick
    mode shrinks it with `n`, so that it still overflows).
    """
    return _backlog_run(OUTAGE, url, n, variant, close_timeout, queue_capacity, settle_max_s)


def w7_shutdown(
    url: str,
    n: int,
    variant: str,
    close_timeout: float = 5.0,
    queue_capacity: int = W7_QUEUE_CAPACITY,
    settle_max_s: float = SETTLE_MAX_S,
) -> Result:
    """W7: `n` events recorded as fast as possible into a queue with room for all of them,
    then `close(close_timeout)` with that backlog; nothing may arrive after it returned."""
    return _backlog_run(SHUTDOWN, url, n, variant, close_timeout, queue_capacity, settle_max_s)
