"""The dispatcher's delivery rules, against an in-process platform (see test_e2e for real HTTP)."""

from __future__ import annotations

import gzip
import threading
import time

import httpx
import pytest

from tracengent import AgentEvent, TracengentClient, TracengentOptions

from ._recording import RecordingPlatform

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "flush_interval_ms": 20}


def client_for(platform: RecordingPlatform, **overrides: object) -> TracengentClient:
    options: dict[str, object] = {"agent_id": "demo-agent", "ingest_key": "agk_demo", **FAST}
    options.update(overrides)
    return TracengentClient(TracengentOptions(**options), transport=platform.transport)  # type: ignore[arg-type]


def delivered_names(platform: RecordingPlatform) -> list[str]:
    return [e["name"] for batch in platform.sent("/v1/ingest/events") for e in batch]


def answer(status: int, **headers: str) -> object:
    return lambda _r: httpx.Response(status, headers=headers, json={"error": "x"})


def test_batches_are_capped_and_everything_is_delivered_once() -> None:
    platform = RecordingPlatform()
    client = client_for(platform, max_batch_size=7)
    for i in range(50):
        client.record(AgentEvent(name=str(i)))
    client.close(5)
    assert delivered_names(platform) == [str(i) for i in range(50)]
    assert max(len(b) for b in platform.sent("/v1/ingest/events")) <= 7
    assert client.dropped_count == 0


def test_a_batch_stops_growing_at_one_mebibyte_of_events() -> None:
    """Large events make small batches: one stops growing once it holds 1 MiB of events."""
    platform = RecordingPlatform()
    client = client_for(platform, max_batch_size=1000, gzip_threshold_bytes=10**9)
    payload = "x" * 200_000
    for i in range(12):
        client.record(AgentEvent(name=str(i), input=payload))
    client.close(5)
    assert delivered_names(platform) == [str(i) for i in range(12)]
    sizes = [len(b) for b in platform.raw("/v1/ingest/events")]
    assert [len(b) for b in platform.sent("/v1/ingest/events")] == [6, 6]  # 6 × 200 kB > 1 MiB
    assert max(sizes) < (1 << 20) + client.options.max_event_bytes, sizes


def test_503_then_200_delivers_exactly_once() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/ingest/events", answer(503), answer(503))
    client = client_for(platform)
    for i in range(3):
        client.record(AgentEvent(name=str(i)))
    assert client.flush(5)
    client.close(1)
    bodies = platform.raw("/v1/ingest/events")
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same bytes, resent
    assert delivered_names(platform)[-3:] == ["0", "1", "2"]
    assert client.dropped_count == 0


def test_429_retry_after_waits_at_least_that_long() -> None:
    platform = RecordingPlatform()
    times: list[float] = []

    def first(_r: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "1"})

    def second(_r: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return httpx.Response(202)

    platform.script("/v1/ingest/events", first, second)
    client = client_for(platform)
    client.record(AgentEvent(name="e"))
    assert client.flush(5)
    client.close(1)
    assert times[1] - times[0] >= 1.0


def test_other_4xx_drops_the_batch_without_retrying() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/ingest/events", answer(400))
    client = client_for(platform)
    for i in range(4):
        client.record(AgentEvent(name=str(i)))
    client.flush(5)
    client.record(AgentEvent(name="after"))
    client.close(5)
    assert len(platform.raw("/v1/ingest/events")) == 2
    assert delivered_names(platform)[-1] == "after"
    assert client.dropped_count == 4
    assert client._core.dispatcher.stats.dropped["rejected"] == 4


def test_a_413_splits_the_batch_instead_of_resending_it() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/ingest/events", answer(413), answer(413))
    client = client_for(platform)
    for i in range(8):
        client.record(AgentEvent(name=str(i)))
    client.close(5)
    sizes = [len(b) for b in platform.sent("/v1/ingest/events")]
    assert sizes == [8, 4, 2, 2, 4]
    assert sorted(delivered_names(platform)[-8:]) == [str(i) for i in range(8)]
    assert client.dropped_count == 0


def test_an_oversize_event_is_dropped_before_sending() -> None:
    platform = RecordingPlatform()
    client = client_for(platform, max_event_bytes=2000)
    client.record(AgentEvent(name="big", input="x" * 5000))
    client.record(AgentEvent(name="small"))
    client.close(5)
    assert delivered_names(platform) == ["small"]
    assert client._core.dispatcher.stats.dropped["oversize"] == 1


def test_bodies_over_the_threshold_are_gzipped_once() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/ingest/events", answer(503))
    client = client_for(platform, gzip_threshold_bytes=200)
    for i in range(10):
        client.record(AgentEvent(name=f"event number {i}"))
    client.close(5)
    sent = [r for r in platform.requests if r.url.path == "/v1/ingest/events"]
    assert [r.headers.get("content-encoding") for r in sent] == ["gzip", "gzip"]
    assert sent[0].content == sent[1].content
    assert gzip.decompress(sent[0].content).startswith(b'[{"eventId":')


def test_one_bad_event_never_costs_its_batch() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    circular: dict[str, object] = {}
    circular["self"] = circular
    platform = RecordingPlatform()
    client = client_for(platform)
    client.record(AgentEvent(name="circular", input=circular))
    client.record(AgentEvent(name="hostile", output=Hostile()))
    client.record(AgentEvent(name="set", attributes={"s": {3, 1, 2}, "b": b"\x00\xff"}))
    client.record("not an event")  # type: ignore[arg-type]
    client.record(AgentEvent(name="fine"))
    client.close(5)
    assert delivered_names(platform) == ["circular", "hostile", "set", "fine"]
    assert client.dropped_count == 1


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    platform = RecordingPlatform()
    gate, entered = threading.Event(), threading.Event()

    def stuck(_r: httpx.Request) -> httpx.Response:
        entered.set()
        gate.wait(5)
        return httpx.Response(202)

    platform.script("/v1/ingest/events", stuck)
    client = client_for(platform, queue_capacity=10, max_batch_size=5)
    client.record(AgentEvent(name="first"))
    client._core.dispatcher._wake.set()
    assert entered.wait(5)  # the first batch is now stuck in flight
    for i in range(100):
        client.record(AgentEvent(name=str(i)))
    gate.set()
    client.close(5)
    stats = client._core.dispatcher.stats
    assert stats.dropped["queue_full"] == 90
    assert stats.delivered == 11
    assert stats.delivered + client.dropped_count == 101


def test_platform_down_close_returns_within_its_timeout_and_counts_every_loss() -> None:
    platform = RecordingPlatform()

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    platform.script("/v1/ingest/events", *[down] * 10_000)
    client = client_for(platform, backoff_base_s=0.2, backoff_max_s=1.0, max_retries=100)
    for i in range(250):
        client.record(AgentEvent(name=str(i)))
    started = time.monotonic()
    client.close(timeout=1)
    took = time.monotonic() - started
    assert took < 2.5, took
    assert client.dropped_count == 250
    sent_after = len(platform.requests)
    time.sleep(0.3)
    assert len(platform.requests) == sent_after  # nothing is sent after close() returned


def test_close_with_a_large_backlog_stops_delivering_early_enough_to_count_the_rest() -> None:
    """A slow platform and 300k queued events: close() keeps a reserve before its deadline for
    counting (and freeing) what it cannot deliver, so it returns within its timeout."""
    platform = RecordingPlatform()

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.02)
        return httpx.Response(200, json={"accepted": 1})

    platform.script("/v1/ingest/events", *[slow] * 10_000)
    client = client_for(platform, queue_capacity=400_000, flush_interval_ms=60_000)
    events = [AgentEvent(name="e") for _ in range(300_000)]
    for event in events:
        client.record(event)
    started = time.monotonic()
    client.close(timeout=1)
    took = time.monotonic() - started
    stats = client._core.dispatcher.stats
    assert took < 1.2, took
    assert 0 < stats.delivered < 300_000
    assert stats.delivered + client.dropped_count == 300_000


def test_events_recorded_after_close_are_dropped() -> None:
    platform = RecordingPlatform()
    client = client_for(platform)
    client.close(1)
    client.record(AgentEvent(name="late"))
    assert client.dropped_count == 1
    assert platform.raw("/v1/ingest/events") == []


def test_flush_returns_false_when_it_cannot_finish_in_time() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/ingest/events", lambda _r: (time.sleep(1.0), httpx.Response(202))[1])
    client = client_for(platform)
    client.record(AgentEvent(name="slow"))
    assert client.flush(0.2) is False
    assert client.flush(5) is True
    client.close(1)


@pytest.mark.parametrize("count", [0, 1])
def test_close_is_idempotent(count: int) -> None:
    client = client_for(RecordingPlatform())
    for _ in range(count):
        client.record(AgentEvent(name="e"))
    client.close(1)
    client.close(1)
    assert client.dropped_count == 0
