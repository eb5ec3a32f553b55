"""W2: `trace.track_tool_call(name, tool)` against a bare `tool()` call."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._sink import SinkClient
from .common import (
    DELIVERY_TIMEOUT_S,
    LogCounter,
    Result,
    Steps,
    options,
    run_variant,
    wait_delivered,
    warm_up,
)

TRACE_NAME = "bench: tool calls"
TOOL_NAME = "search_flights"


def _tool() -> dict[str, bool]:
    return {"ok": True}


@dataclass(frozen=True)
class _Start:
    """The clocks when the tracked calls began (after a collection, as for the bare loop)."""

    cpu: float
    thread: float
    wall: float

    @classmethod
    def now(cls) -> _Start:
        gc.collect()
        return cls(time.process_time(), time.thread_time(), time.perf_counter())


# The timed loops, one per client: a loop of awaited calls cannot go through `Steps` (a yield
# per call would be timed with it). Each ends inside the trace with `settle(start)`, which reads
# the clocks first.


def _tracked(client: Any, n: int, settle: Callable[[_Start], Result]) -> Result:
    with client.begin_trace(TRACE_NAME) as trace:
        start = _Start.now()
        for _ in range(n):
            trace.track_tool_call(TOOL_NAME, _tool)
        return settle(start)


async def _tracked_async(client: Any, n: int, settle: Callable[[_Start], Result]) -> Result:
    async with client.begin_trace(TRACE_NAME) as trace:
        start = _Start.now()
        for _ in range(n):
            await trace.track_tool_call(TOOL_NAME, _tool)
        return settle(start)


def w2_tool_call(url: str, n: int, variant: str) -> Result:
    """W2: `trace.track_tool_call(name, tool)` against a bare `tool()` call, n times each.

    Caller overhead: the wall-time difference per call on the calling thread. CPU overhead: the
    process CPU from the first tracked call until its events were all delivered, minus the bare
    loop's CPU, per call.
    """
    sink = SinkClient(url)
    client_options = options(url, queue_capacity=n + 1_000)
    tracked = _tracked_async if variant == "async" else _tracked

    def bare() -> tuple[float, float]:
        gc.collect()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            _tool()
        return time.perf_counter() - t0, time.process_time() - cpu0

    def steps(client_class: Any) -> Steps:
        client = client_class(client_options)
        with LogCounter.attached() as logs:
            warm_up(client.record, sink)
            dropped0 = client.dropped_count
            bare_wall, bare_cpu = bare()

            def settle(start: _Start) -> Result:
                wall = time.perf_counter() - start.wall
                caller_cpu = time.thread_time() - start.thread
                stats = wait_delivered(
                    sink, n, lambda: client.dropped_count - dropped0, DELIVERY_TIMEOUT_S
                )
                cpu = time.process_time() - start.cpu
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

            result: Result = yield tracked(client, n, settle)
            result["dropped"] = client.dropped_count - dropped0
            yield client.close(5.0)
        result["log_lines"] = logs.lines
        return result

    return run_variant(variant, steps)
