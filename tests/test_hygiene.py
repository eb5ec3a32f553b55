"""Resource hygiene: clients come and go without leaving threads or memory behind, and an idle
client costs no measurable CPU.

Each client records one event through an in-process `httpx.MockTransport` (so its dispatcher
thread really starts and really delivers) and is closed. Bounds are generous: they catch a
per-client leak (a thread, a connection pool, a client kept alive by a registry), not noise.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable

import httpx
import pytest

from tracengent import AgentEvent, AsyncTracengentClient, TracengentClient, TracengentOptions

CLIENTS = 1_000
WARM_UP = 100
TRACED_GROWTH_LIMIT = 1_000_000
"""Bytes of Python allocations the 1,000 clients may leave behind: under 1 KB each, where one
leaked client (its dispatcher, queue, options, httpx client and thread) is several KB."""
RSS_GROWTH_LIMIT = 32 * 1024 * 1024
IDLE_CPU_LIMIT_S = 0.020
"""CPU an idle client's dispatcher thread may use in one second."""


class Ingest:
    """A MockTransport that accepts every batch and counts the events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events = 0
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/ingest/events":
            body = request.read()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            count = len(json.loads(body))
            with self._lock:
                self.events += count
        return httpx.Response(202, json={"accepted": 1, "duplicates": 0})


def options(**overrides: object) -> TracengentOptions:
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": "http://platform.test",
        "ingest_key": "agk_demo",
    }
    values.update(overrides)
    return TracengentOptions(**values)  # type: ignore[arg-type]


def one_client(ingest: Ingest) -> None:
    client = TracengentClient(options(), transport=ingest.transport)
    client.record(AgentEvent(name="e"))
    client.close(5)
    assert client.dropped_count == 0


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():  # bounded by the deadline
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(0.02)
    return True


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def rss_bytes() -> int | None:
    """Resident set size now (not the peak), where /proc has it."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def test_a_thousand_clients_leave_no_threads_and_no_memory_behind() -> None:
    ingest = Ingest()
    threads_before = set(threading.enumerate())
    count_before = threading.active_count()
    tracemalloc.start()
    try:
        for _ in range(WARM_UP):  # first-use caches (imports, regexes, pools) fill up here
            one_client(ingest)
        gc.collect()
        traced_before, _ = tracemalloc.get_traced_memory()
        rss_before = rss_bytes()
        for _ in range(CLIENTS):
            one_client(ingest)
        gc.collect()
        traced_after, _ = tracemalloc.get_traced_memory()
        rss_after = rss_bytes()
    finally:
        tracemalloc.stop()

    assert ingest.events == WARM_UP + CLIENTS  # every client really delivered
    assert wait_until(lambda: not new_threads(threads_before), timeout=5), new_threads(
        threads_before
    )
    assert threading.active_count() <= count_before
    growth = traced_after - traced_before
    assert growth < TRACED_GROWTH_LIMIT, f"{growth} bytes still allocated after {CLIENTS} clients"
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < RSS_GROWTH_LIMIT, rss_after - rss_before


def test_async_clients_leave_no_threads_behind() -> None:
    ingest = Ingest()
    threads_before = set(threading.enumerate())

    async def main() -> None:
        for _ in range(200):
            client = AsyncTracengentClient(options(), transport=ingest.transport)
            client.record(AgentEvent(name="e"))
            await client.close(5)
            assert client.dropped_count == 0

    asyncio.run(main())  # also shuts down the loop's default executor
    assert ingest.events == 200
    assert wait_until(lambda: not new_threads(threads_before), timeout=5), new_threads(
        threads_before
    )


def test_a_client_that_never_records_starts_no_thread() -> None:
    threads_before = set(threading.enumerate())
    client = TracengentClient(options(), transport=Ingest().transport)
    assert new_threads(threads_before) == []
    client.close(1)


def _thread_cpu(thread: threading.Thread) -> Callable[[], float] | None:
    """A reader of one thread's CPU time, where the platform has per-thread clocks."""
    getter = getattr(time, "pthread_getcpuclockid", None)
    if getter is None or thread.ident is None:
        return None
    try:
        clock = getter(thread.ident)
        time.clock_gettime(clock)
    except (OSError, OverflowError):
        return None
    return lambda: time.clock_gettime(clock)


def _process_cpu_over_a_second() -> float:
    started = time.process_time()
    time.sleep(1.0)
    return time.process_time() - started


@pytest.mark.parametrize("flush_interval_ms", [2000, 50])
def test_an_idle_client_uses_no_measurable_cpu(flush_interval_ms: int) -> None:
    baseline = _process_cpu_over_a_second()
    threads_before = set(threading.enumerate())
    client = TracengentClient(
        options(flush_interval_ms=flush_interval_ms), transport=Ingest().transport
    )
    client.record(AgentEvent(name="wake the dispatcher"))
    assert client.flush(5)
    (dispatcher,) = [t for t in new_threads(threads_before) if t.name == "tracengent-dispatcher"]
    read_cpu = _thread_cpu(dispatcher)
    thread_before = read_cpu() if read_cpu is not None else 0.0
    with_client = _process_cpu_over_a_second()
    thread_used = read_cpu() - thread_before if read_cpu is not None else None
    client.close(1)

    if thread_used is not None:  # exact: the dispatcher thread's own clock
        assert thread_used < IDLE_CPU_LIMIT_S, f"{thread_used * 1000:.1f} ms of CPU in 1 s idle"
    # Whole process, so noisy: a generous bound that a spinning thread would still blow.
    extra = with_client - baseline
    assert extra < 0.1, f"{extra * 1000:.1f} ms more process CPU in 1 s with an idle client"


def test_closed_clients_are_not_kept_alive_by_the_sdk() -> None:
    """After close() and the last user reference, nothing in the SDK holds the client."""
    ingest = Ingest()
    client = TracengentClient(options(), transport=ingest.transport)
    client.record(AgentEvent(name="e"))
    client.close(5)
    core = weakref.ref(client._core)
    dispatcher = weakref.ref(client._core.dispatcher)
    del client
    gc.collect()
    assert core() is None and dispatcher() is None
