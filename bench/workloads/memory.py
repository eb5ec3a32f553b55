"""How much memory a workload's SDK holds: the process's RSS and its high-water mark, and the
bound W4 and W7 allow (what the queue can hold, measured per event, with some slack)."""

from __future__ import annotations

import contextlib
import gc
import resource
import tracemalloc

from .common import event, options

MEMORY_SLACK_MB = 16.0
MEMORY_FACTOR = 1.5


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def calibrate_event_bytes(url: str, k: int) -> float:
    """Bytes one queued event holds (tracemalloc), to bound a workload's memory by the queue.

    A client that never sends (one huge batch, an hour's flush interval) keeps what it records;
    the traced growth over `k` records is the SDK's footprint per queued event.
    """
    from tracengent import AgentEvent, TracengentClient

    client = TracengentClient(
        options(url, max_batch_size=10**7, flush_interval_ms=3_600_000, queue_capacity=k + 10)
    )
    client.record(AgentEvent(name="bench.calibrate"))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(k):
        client.record(event("bench.calibrate", i))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    with contextlib.suppress(Exception):
        client.close(0.01)
    return grown / k


def memory_bound_mb(per_event_bytes: float, events: int) -> float:
    return MEMORY_FACTOR * events * per_event_bytes / 2**20 + MEMORY_SLACK_MB
