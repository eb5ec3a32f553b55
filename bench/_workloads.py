"""The workloads W1..W7 and the baselines: each a function returning a dict of measurements.

Every workload runs in a fresh process of its own (`python bench/_workloads.py NAME PARAMS`),
started by the orchestrator with the interpreter of the SDK under test: the repository's for
``--sdk current``, the side virtualenv's for ``--sdk 0.1.0``. It is run by path, so the
repository's ``tracengent/`` is not on ``sys.path`` by accident and the same code measures
either SDK. A fresh process per workload also makes ``ru_maxrss`` (a process high-water mark)
mean "this workload's peak", and keeps one workload's garbage out of the next one's timings.

The workloads use only names tracengent 0.1.0 has: `TracengentClient`, `TracengentOptions`,
`AgentEvent`, `begin_trace`/`track_tool_call`, `authorize`, `record`, `dropped_count` and
`close`; the async variants use `AsyncTracengentClient` and are skipped where it is missing.
What was delivered is what the sink counted (distinct event ids), never what the SDK says.

Times: `time.perf_counter()` for durations in this process, `time.monotonic()` where they are
compared with the sink's (one clock for every process on Linux), `time.process_time()` for the
CPU of the whole process (the caller and the SDK's background thread), `time.thread_time()` for
the calling thread's own CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

if __package__:
    from ._sink import SinkClient
else:  # run by path as a workload process, possibly by another virtualenv's interpreter
    from _sink import SinkClient  # type: ignore[import-not-found,no-redef]

Result = dict[str, Any]
AGENT_ID = "bench-agent"
WARMUP_EVENTS = 200  # fits the quick W4 queue; a part batch, sent within the flush interval
DELIVERY_TIMEOUT_S = 120.0
SETTLE_MAX_S = 60.0
"""After close(), how long an SDK thread that is still running may take to finish sending
(0.1.0's sends its whole backlog in one request after close() returned)."""
CLOSE_GRACE_S = 0.25
"""How far past its timeout `close()` may return and still count as within it (scheduling
slack on a noisy 2-core machine; the SDK itself allows 0.2 s to join its thread)."""
MEMORY_SLACK_MB = 16.0
MEMORY_FACTOR = 1.5
W7_QUEUE_CAPACITY = 1_000_000
"""W7 records 800k events with room for all of them: the backlog at close() is the test."""


# --- helpers ------------------------------------------------------------------------------------


def _options(url: str, **overrides: Any) -> Any:
    from tracengent import TracengentOptions

    return TracengentOptions(
        agent_id=AGENT_ID,
        base_url=url,
        client_id="key_demo",
        client_secret="ags_demo",
        **overrides,
    )


def _event(name: str, seq: int) -> Any:
    from tracengent import AgentEvent

    return AgentEvent(name=name, attributes={"seq": seq, "user": "u_1"})


def _async_client_class() -> Any:
    import tracengent

    return getattr(tracengent, "AsyncTracengentClient", None)


def _sdk_delivered(client: Any, warm_up: int) -> int | None:
    """The SDK's own count of delivered events after the warm-up, where it keeps one (0.2)."""
    stats = getattr(getattr(getattr(client, "_core", None), "dispatcher", None), "stats", None)
    delivered = getattr(stats, "delivered", None)
    return delivered - warm_up if isinstance(delivered, int) else None


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered)) - 1))
    return ordered[index]


class LogCounter(logging.Handler):
    """Counts the lines the "tracengent" logger writes at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        if len(self.samples) < 5:
            self.samples.append(record.getMessage()[:200])

    @classmethod
    @contextlib.contextmanager
    def attached(cls) -> Iterator[LogCounter]:
        counter = cls()
        logger = logging.getLogger("tracengent")
        logger.addHandler(counter)
        try:
            yield counter
        finally:
            logger.removeHandler(counter)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


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


def _wait_delivered(
    sink: SinkClient, recorded: int, dropped: Callable[[], int], timeout: float
) -> dict[str, Any]:
    """Block until every recorded event was delivered or counted as dropped (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        stats = sink.wait_events(recorded - dropped(), max(0.01, min(1.0, left)))
        if stats["events_unique"] + dropped() >= recorded or left <= 0:
            return stats


def _warm_up_sync(record: Callable[[Any], None], sink: SinkClient) -> None:
    sink.reset()
    for i in range(WARMUP_EVENTS):
        record(_event("bench.warmup", i))
    stats = sink.wait_events(WARMUP_EVENTS, 30.0)
    if stats["events_unique"] < WARMUP_EVENTS:
        raise RuntimeError(f"warm-up: {stats['events_unique']}/{WARMUP_EVENTS} events arrived")
    sink.reset()


def _calibrate_event_bytes(url: str, k: int) -> float:
    """Bytes one queued event holds (tracemalloc), to bound a workload's memory by the queue.

    A client that never sends (one huge batch, an hour's flush interval) keeps what it records;
    the traced growth over `k` records is the SDK's footprint per queued event.
    """
    from tracengent import AgentEvent, TracengentClient

    client = TracengentClient(
        _options(url, max_batch_size=10**7, flush_interval_ms=3_600_000, queue_capacity=k + 10)
    )
    client.record(AgentEvent(name="bench.calibrate"))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(k):
        client.record(_event("bench.calibrate", i))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    with contextlib.suppress(Exception):
        client.close(0.01)
    return grown / k


def _memory_bound_mb(per_event_bytes: float, events: int) -> float:
    return MEMORY_FACTOR * events * per_event_bytes / 2**20 + MEMORY_SLACK_MB


def _run_variant(variant: str, sync: Callable[[], Result], run_async: Callable[[], Any]) -> Result:
    if variant == "sync":
        return sync()
    if _async_client_class() is None:
        return {"skipped": "this SDK has no AsyncTracengentClient"}
    result: Result = asyncio.run(run_async())
    return result


# --- W1 / W3: record() and delivered throughput -----------------------------------------------


def _pipeline_measure(
    record: Callable[[Any], None],
    events: list[Any],
    sink: SinkClient,
    dropped: Callable[[], int],
) -> Result:
    n = len(events)
    gc.collect()
    cpu0, thread0 = time.process_time(), time.thread_time()
    start_mono, t0 = time.monotonic(), time.perf_counter()
    for event in events:
        record(event)
    t1, thread1 = time.perf_counter(), time.thread_time()
    stats = _wait_delivered(sink, n, dropped, DELIVERY_TIMEOUT_S)
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
    options = _options(url, queue_capacity=n + 1_000)
    events = [_event("bench.record", i) for i in range(n)]

    def sync() -> Result:
        from tracengent import TracengentClient

        client = TracengentClient(options)
        with LogCounter.attached() as logs:
            _warm_up_sync(client.record, sink)
            dropped0 = client.dropped_count
            result = _pipeline_measure(
                client.record, events, sink, lambda: client.dropped_count - dropped0
            )
            result["sdk_delivered"] = _sdk_delivered(client, WARMUP_EVENTS)
            client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    async def run_async() -> Result:
        client = _async_client_class()(options)
        with LogCounter.attached() as logs:
            _warm_up_sync(client.record, sink)  # blocking waits on the loop: nothing else runs
            dropped0 = client.dropped_count
            result = _pipeline_measure(
                client.record, events, sink, lambda: client.dropped_count - dropped0
            )
            result["sdk_delivered"] = _sdk_delivered(client, WARMUP_EVENTS)
            await client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    return _run_variant(variant, sync, run_async)


def w1_record(url: str, n: int, variant: str) -> Result:
    """W1: `record()` on the calling thread, and the process CPU per delivered event."""
    return pipeline(url, n, variant)


def w3_throughput(url: str, n: int, variant: str) -> Result:
    """W3: delivered events/s, from the first `record()` to the sink's last acknowledgement."""
    return pipeline(url, n, variant)


# --- W2: track_tool_call ------------------------------------------------------------------------


def _tool() -> dict[str, bool]:
    return {"ok": True}


def w2_tool_call(url: str, n: int, variant: str) -> Result:
    """W2: `trace.track_tool_call(name, tool)` against a bare `tool()` call, n times each.

    Caller overhead: the wall-time difference per call on the calling thread. CPU overhead: the
    process CPU from the first tracked call until its events were all delivered, minus the bare
    loop's CPU, per call.
    """
    sink = SinkClient(url)
    options = _options(url, queue_capacity=n + 1_000)

    def bare() -> tuple[float, float]:
        gc.collect()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            _tool()
        return time.perf_counter() - t0, time.process_time() - cpu0

    def summary(
        bare_wall: float,
        bare_cpu: float,
        wall: float,
        caller_cpu: float,
        cpu: float,
        stats: dict[str, Any],
    ) -> Result:
        return {
            "calls": n,
            "bare_ns_per_call": bare_wall / n * 1e9,
            "tracked_us_per_call": wall / n * 1e6,
            "caller_overhead_us": (wall - bare_wall) / n * 1e6,
            "caller_cpu_overhead_us": (caller_cpu - bare_cpu) / n * 1e6,
            "cpu_overhead_us": (cpu - bare_cpu) / n * 1e6,
            "delivered": stats["events_unique"],
            "duplicates": stats["duplicates"],
        }

    def sync() -> Result:
        from tracengent import TracengentClient

        client = TracengentClient(options)
        with LogCounter.attached() as logs:
            _warm_up_sync(client.record, sink)
            dropped0 = client.dropped_count
            bare_wall, bare_cpu = bare()
            with client.begin_trace("bench: tool calls") as trace:
                gc.collect()
                cpu0, thread0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
                for _ in range(n):
                    trace.track_tool_call("search_flights", _tool)
                wall, caller_cpu = time.perf_counter() - t0, time.thread_time() - thread0
                stats = _wait_delivered(
                    sink, n, lambda: client.dropped_count - dropped0, DELIVERY_TIMEOUT_S
                )
                cpu = time.process_time() - cpu0
            result = summary(bare_wall, bare_cpu, wall, caller_cpu, cpu, stats)
            result["dropped"] = client.dropped_count - dropped0
            client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    async def run_async() -> Result:
        client = _async_client_class()(options)
        with LogCounter.attached() as logs:
            _warm_up_sync(client.record, sink)
            dropped0 = client.dropped_count
            bare_wall, bare_cpu = bare()
            async with client.begin_trace("bench: tool calls") as trace:
                gc.collect()
                cpu0, thread0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
                for _ in range(n):
                    await trace.track_tool_call("search_flights", _tool)
                wall, caller_cpu = time.perf_counter() - t0, time.thread_time() - thread0
                stats = _wait_delivered(
                    sink, n, lambda: client.dropped_count - dropped0, DELIVERY_TIMEOUT_S
                )
                cpu = time.process_time() - cpu0
            result = summary(bare_wall, bare_cpu, wall, caller_cpu, cpu, stats)
            result["dropped"] = client.dropped_count - dropped0
            await client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    return _run_variant(variant, sync, run_async)


# --- W4 / W7: outage and shutdown with a backlog (memory, accounting, close()) -----------------


def _backlog_run(
    url: str,
    n: int,
    variant: str,
    *,
    name: str,
    outage: bool,
    close_timeout: float,
    queue_capacity: int | None,
    quiet_s: float,
    settle_max_s: float,
) -> Result:
    """Record `n` events as fast as possible (built in the loop, so the SDK's memory is what
    grows), then `close(close_timeout)`; account for every event afterwards."""
    sink = SinkClient(url)
    sink.set_mode(202)
    overrides = {} if queue_capacity is None else {"queue_capacity": queue_capacity}
    options = _options(url, **overrides)
    capacity = options.queue_capacity
    marks: dict[str, Any] = {}

    def before_loop(client: Any) -> None:
        _warm_up_sync(client.record, sink)
        if outage:
            sink.set_mode(503)
        gc.collect()
        marks["dropped0"] = client.dropped_count
        marks["hwm_reset"] = _reset_peak()
        marks["rss0"] = _rss_mb()
        marks["start"] = time.monotonic()
        marks["t0"] = time.perf_counter()

    def after_loop(client: Any) -> None:
        marks["record_s"] = time.perf_counter() - marks["t0"]
        marks["dropped_before_close"] = client.dropped_count - marks["dropped0"]
        marks["close0"] = time.perf_counter()

    def after_close(client: Any) -> None:
        marks["close_s"] = time.perf_counter() - marks["close0"]
        marks["closed_at"] = time.monotonic()
        marks["peak"] = _peak_mb()
        marks["dropped"] = client.dropped_count - marks["dropped0"]
        marks["sdk_delivered"] = _sdk_delivered(client, WARMUP_EVENTS)

    def sync() -> Result:
        from tracengent import AgentEvent, TracengentClient

        client = TracengentClient(options)
        with LogCounter.attached() as logs:
            before_loop(client)
            for i in range(n):
                client.record(AgentEvent(name=name, attributes={"seq": i, "user": "u_1"}))
            after_loop(client)
            client.close(close_timeout)
            after_close(client)
            marks["lines_at_close"] = logs.lines
            marks.update(_settle(sink, quiet_s, settle_max_s))
            marks["peak_final"] = _peak_mb()
            marks["dropped_final"] = client.dropped_count - marks["dropped0"]
        marks["log_lines_final"] = logs.lines
        marks["log_samples"] = logs.samples
        return marks

    async def run_async() -> Result:
        from tracengent import AgentEvent

        client = _async_client_class()(options)
        with LogCounter.attached() as logs:
            before_loop(client)
            for i in range(n):
                client.record(AgentEvent(name=name, attributes={"seq": i, "user": "u_1"}))
            after_loop(client)
            await client.close(close_timeout)
            after_close(client)
            marks["lines_at_close"] = logs.lines
            marks.update(_settle(sink, quiet_s, settle_max_s))
            marks["peak_final"] = _peak_mb()
            marks["dropped_final"] = client.dropped_count - marks["dropped0"]
        marks["log_lines_final"] = logs.lines
        marks["log_samples"] = logs.samples
        return marks

    run = _run_variant(variant, sync, run_async)
    if "skipped" in run:
        return run
    stats = sink.stats(since=run["closed_at"])
    sink.set_mode(202)
    held = min(n, capacity)
    per_event = _calibrate_event_bytes(url, min(held, 20_000))
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
        "memory_bound_mb": _memory_bound_mb(per_event, held),
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
    return _backlog_run(
        url,
        n,
        variant,
        name="bench.outage",
        outage=True,
        close_timeout=close_timeout,
        queue_capacity=queue_capacity,
        quiet_s=0.5,
        settle_max_s=settle_max_s,
    )


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
    return _backlog_run(
        url,
        n,
        variant,
        name="bench.backlog",
        outage=False,
        close_timeout=close_timeout,
        queue_capacity=queue_capacity,
        quiet_s=1.0,
        settle_max_s=settle_max_s,
    )


# --- W5: authorize() ----------------------------------------------------------------------------

PERMISSION = "payments:refund"
CONTEXT = {"amount": 10, "currency": "EUR"}
JSON_HEADERS = {"Content-Type": "application/json"}


def _raw_post(url: str, body: Any, headers: dict[str, str]) -> Any:
    """The leanest hand-written POST: encode the JSON, build an `httpx.Request`, `send` it.

    (`client.post(path, json=...)` goes through `build_request` and URL merging, which on this
    machine costs ~100 µs more than `send` and would hide the SDK's overhead.)
    """
    import httpx

    content = json.dumps(body, separators=(",", ":")).encode()
    return httpx.Request("POST", url + "/echo", content=content, headers=headers)


def _latency_summary(sdk: list[float], raw: list[float]) -> Result:
    us = 1e6
    return {
        "calls": len(sdk),
        "sdk_p50_us": statistics.median(sdk) * us,
        "sdk_p99_us": _percentile(sdk, 99) * us,
        "raw_p50_us": statistics.median(raw) * us,
        "raw_p99_us": _percentile(raw, 99) * us,
        "overhead_p50_us": (statistics.median(sdk) - statistics.median(raw)) * us,
        "overhead_p99_us": (_percentile(sdk, 99) - _percentile(raw, 99)) * us,
    }


def w5_authorize(url: str, n: int, variant: str) -> Result:
    """W5: `authorize()` latency against a raw httpx POST of the same body to the same server.

    The raw POST (`_raw_post`, to ``/echo``, which answers the same decision bytes as
    ``/v1/authorize``) sends the same JSON with the bearer token and reads the JSON answer. The
    two alternate which goes first, so drift on a noisy machine hits both alike; the first 50 of
    each are a warm-up.
    """
    import httpx

    body = {"permission": PERMISSION, "context": CONTEXT}
    warmup = 50

    def sync() -> Result:
        from tracengent import TracengentClient

        client = TracengentClient(_options(url))
        raw = httpx.Client(base_url=url, timeout=10.0)
        token = raw.post("/v1/oauth/token", data={"grant_type": "client_credentials"}).json()
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {token['access_token']}"}
        sdk_lat: list[float] = []
        raw_lat: list[float] = []
        denied = 0

        def ask() -> None:
            nonlocal denied
            t0 = time.perf_counter()
            decision = client.authorize(PERMISSION, CONTEXT)
            sdk_lat.append(time.perf_counter() - t0)
            denied += not decision.allowed

        def post() -> None:
            t0 = time.perf_counter()
            raw.send(_raw_post(url, body, headers)).json()
            raw_lat.append(time.perf_counter() - t0)

        for i in range(n + warmup):
            for call in (ask, post) if i % 2 == 0 else (post, ask):
                call()
        raw.close()
        client.close(5.0)
        return {**_latency_summary(sdk_lat[warmup:], raw_lat[warmup:]), "denied": denied}

    async def run_async() -> Result:
        client = _async_client_class()(_options(url))
        raw = httpx.AsyncClient(base_url=url, timeout=10.0)
        answer = await raw.post("/v1/oauth/token", data={"grant_type": "client_credentials"})
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {answer.json()['access_token']}"}
        sdk_lat: list[float] = []
        raw_lat: list[float] = []
        denied = 0

        async def ask() -> None:
            nonlocal denied
            t0 = time.perf_counter()
            decision = await client.authorize(PERMISSION, CONTEXT)
            sdk_lat.append(time.perf_counter() - t0)
            denied += not decision.allowed

        async def post() -> None:
            t0 = time.perf_counter()
            (await raw.send(_raw_post(url, body, headers))).json()
            raw_lat.append(time.perf_counter() - t0)

        for i in range(n + warmup):
            for call in (ask, post) if i % 2 == 0 else (post, ask):
                await call()
        await raw.aclose()
        await client.close(5.0)
        return {**_latency_summary(sdk_lat[warmup:], raw_lat[warmup:]), "denied": denied}

    return _run_variant(variant, sync, run_async)


# --- W6: import time (run by the orchestrator: it only starts processes) ----------------------

IMPORT_SNIPPET = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def w6_imports(python: str, env: dict[str, str], rounds: int) -> Result:
    """W6: `import X` in fresh interpreters, median of `rounds` (after one discarded round).

    Rounds interleave the modules, so a noisy moment costs every module alike. The target
    compares `tracengent` with `httpx, pydantic` imported together in one process.
    """
    # The last one is what an application pays to start using the client: names load lazily.
    client = "tracengent; tracengent.TracengentClient"
    modules = ["httpx", "pydantic", "httpx, pydantic", "tracengent", "tracengent_api", client]
    with tempfile.TemporaryDirectory() as cwd:

        def available(module: str) -> bool:
            probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
            probed = subprocess.run([python, "-c", probe], env=env, cwd=cwd, timeout=120)
            return probed.returncode == 0

        modules = [m for m in modules if "," in m or ";" in m or available(m)]
        samples: dict[str, list[float]] = {m: [] for m in modules}
        for round_ in range(rounds + 1):
            for module in modules:
                out = subprocess.run(
                    [python, "-c", IMPORT_SNIPPET.format(module)],
                    env=env,
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                )
                if round_:
                    samples[module].append(float(out.stdout.strip()) * 1e3)
    medians = {m: statistics.median(s) for m, s in samples.items()}
    result: Result = {"rounds": rounds, "ms": medians}
    result["tracengent_ms"] = medians["tracengent"]
    result["tracengent_api_ms"] = medians.get("tracengent_api")
    result["httpx_ms"] = medians["httpx"]
    result["pydantic_ms"] = medians["pydantic"]
    result["httpx_pydantic_ms"] = medians["httpx, pydantic"]
    result["overhead_ms"] = medians["tracengent"] - medians["httpx, pydantic"]
    result["client_ms"] = medians[client]
    result["client_overhead_ms"] = medians[client] - medians["httpx, pydantic"]
    return result


# --- baselines ----------------------------------------------------------------------------------


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
    """A raw httpx POST of a small JSON body to the sink's ``/echo`` (`_raw_post`), answer read
    as JSON, on a keep-alive connection."""
    import httpx

    body = {"permission": PERMISSION, "context": CONTEXT}
    latencies: list[float] = []
    with httpx.Client(timeout=10.0) as raw:
        for i in range(n + 50):
            t0 = time.perf_counter()
            raw.send(_raw_post(url, body, JSON_HEADERS)).json()
            if i >= 50:
                latencies.append(time.perf_counter() - t0)
    return {
        "calls": n,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": _percentile(latencies, 99) * 1e6,
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


WORKLOADS: dict[str, Callable[..., Result]] = {
    "W1": w1_record,
    "W2": w2_tool_call,
    "W3": w3_throughput,
    "W4": w4_outage,
    "W5": w5_authorize,
    "W7": w7_shutdown,
    "call": baseline_call,
    "deque_append": baseline_deque_append,
    "httpx_post": baseline_httpx_post,
    "otel_span": baseline_otel_span,
}


def main(argv: list[str]) -> int:
    """Run one workload: ``_workloads.py NAME '{"param": ...}' [EXPECT]``; prints ``RESULT {...}``.

    EXPECT is a JSON object: ``{"version": "0.1.0"}`` or ``{"path": DIR}`` (where `tracengent`
    must be imported from), so a mix-up of interpreters fails instead of measuring the wrong SDK.
    """
    name, params = argv[1], json.loads(argv[2])
    expect = json.loads(argv[3]) if len(argv) > 3 else {}
    import tracengent

    version = getattr(tracengent, "__version__", "?")
    where = os.path.dirname(os.path.abspath(tracengent.__file__ or ""))
    if "version" in expect and version != expect["version"]:
        raise SystemExit(f"expected tracengent {expect['version']}, imported {version} ({where})")
    if "path" in expect and where != os.path.abspath(expect["path"]):
        raise SystemExit(f"expected tracengent from {expect['path']}, imported it from {where}")
    result = WORKLOADS[name](**params)
    result["sdk_version"] = version
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
