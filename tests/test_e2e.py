"""The clients against the real platform over HTTP on 127.0.0.1, through the fault front."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    LlmCallResult,
    Money,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
)

from ._fault_front import FaultFront

pytestmark = pytest.mark.integration


@pytest.fixture
def platform() -> Iterator[FaultFront]:
    with FaultFront() as front:
        yield front


def options(platform: FaultFront, **overrides: object) -> TracengentOptions:
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": platform.url,
        "client_id": "key_demo",
        "client_secret": "ags_demo",
        "flush_interval_ms": 50,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "approval_poll_interval_s": 0.05,
    }
    values.update(overrides)
    return TracengentOptions(**values)  # type: ignore[arg-type]


def test_the_quickstart_scenario(platform: FaultFront) -> None:
    with TracengentClient(options(platform)) as client:
        with client.begin_trace("book a trip to Lisbon", actor_user_id="u_123") as trace:
            trace.step("decided to search flights")
            flights = trace.track_tool_call("search-flights", lambda: ["TP123"])
            answer = trace.track_llm_call(
                "summarize",
                lambda: LlmCallResult("TP123 it is", tokens=900, model="gpt"),
                estimated_tokens=1000,
            )
            client.ensure_authorized("payments:refund", {"amount": 280, "currency": "EUR"})
            trace.track_action("refund", lambda: "refunded", cost=Money.eur(280))
        assert client.has_permission("flights:book")
    assert (flights, answer) == (["TP123"], "TP123 it is")
    names = [e["name"] for e in platform.events]
    assert names == ["decided to search flights", "search-flights", "summarize", "refund"]
    assert {e["traceId"] for e in platform.events} == {trace.trace_id}
    assert [t.status for t in platform.store.traces()] == ["completed"]
    assert platform.duplicates == 0 and client.dropped_count == 0


def test_a_pending_refund_is_approved_by_a_person(platform: FaultFront) -> None:
    platform.review_approvals(True, on_poll=2)
    with TracengentClient(options(platform)) as client:
        client.ensure_authorized("payments:refund", {"amount": 400})
        [approval] = platform.store.approvals()
        assert len(platform.requests_to("/v1/approvals/" + approval.approval_id)) == 2
        platform.review_approvals(False, on_poll=1)
        with pytest.raises(NotAuthorizedException, match="denied by a reviewer"):
            client.ensure_authorized("payments:refund", {"amount": 400})


def test_503_then_200_delivers_every_event_exactly_once(platform: FaultFront) -> None:
    platform.fail_next("/v1/ingest/events", 503, times=2)
    with TracengentClient(options(platform)) as client:
        for i in range(20):
            client.record(AgentEvent(name=str(i)))
        assert client.flush(10)
    assert sorted(int(e["name"]) for e in platform.events) == list(range(20))
    assert platform.duplicates == 0 and client.dropped_count == 0


def test_a_response_lost_after_processing_is_deduplicated(platform: FaultFront) -> None:
    platform.drop_next("/v1/ingest/events", process=True)
    with TracengentClient(options(platform)) as client:
        for i in range(5):
            client.record(AgentEvent(name=str(i)))
        assert client.flush(10)
    assert len(platform.events) == 5
    assert platform.duplicates == 5  # the retry carried the same event ids


def test_429_with_retry_after_waits_at_least_that_long(platform: FaultFront) -> None:
    platform.fail_next("/v1/ingest/events", 429, retry_after=1)
    with TracengentClient(options(platform)) as client:
        client.record(AgentEvent(name="e"))
        assert client.flush(10)
    first, second = platform.requests_to("/v1/ingest/events")[:2]
    assert second.time - first.time >= 1.0


def test_platform_down_close_returns_in_about_its_timeout(platform: FaultFront) -> None:
    platform.down = True
    client = TracengentClient(options(platform, max_retries=50))
    for i in range(300):
        client.record(AgentEvent(name=str(i)))
    started = time.monotonic()
    client.close(timeout=1)
    took = time.monotonic() - started
    assert 0.5 <= took < 2.5, took
    assert client.dropped_count == 300
    seen = len(platform.requests)
    time.sleep(0.3)
    assert len(platform.requests) == seen


def test_a_blackholed_platform_neither_blocks_record_nor_authorize(
    platform: FaultFront,
) -> None:
    platform.blackhole = True
    client = TracengentClient(options(platform, authorize_timeout_s=0.5, request_timeout_s=0.5))
    decision = client.authorize("payments:refund")
    assert decision.allowed is False
    assert "did not answer in time" in decision.reason or "no access token" in decision.reason
    for i in range(1000):
        client.record(AgentEvent(name=str(i)))
    client.close(timeout=1)
    assert client.dropped_count == 1000


async def test_the_async_client_end_to_end(platform: FaultFront) -> None:
    async with AsyncTracengentClient(options(platform)) as client:
        async with client.begin_trace("async trip") as trace:

            async def search() -> list[str]:
                await asyncio.sleep(0)
                return ["TP9"]

            assert await trace.track_tool_call("search", search) == ["TP9"]
            decisions = await asyncio.gather(*(client.authorize("flights:book") for _ in range(10)))
            assert all(d.allowed for d in decisions)
            denied = await client.authorize("admin:wipe")
            assert denied.allowed is False
        assert await client.flush(5)
    assert [e["name"] for e in platform.events] == ["search"]
    assert platform.token_requests == 1
    assert {r.json()["traceId"] for r in platform.requests_to("/v1/authorize")} == {trace.trace_id}


CHILD_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from tracengent import AgentEvent, TracengentClient, TracengentOptions

    client = TracengentClient(TracengentOptions(agent_id="demo-agent", base_url=sys.argv[1],
                                                ingest_key="agk_demo", flush_interval_ms=60_000))
    for i in range(5):
        client.record(AgentEvent(name="parent-" + str(i)))
    BODY
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_delivers_its_own_events_and_not_the_parents(
    platform: FaultFront,
) -> None:
    body = textwrap.dedent(
        """
        pid = os.fork()
        if pid == 0:
            client.record(AgentEvent(name="child"))
            client.flush(5)
            os._exit(0)
        os.waitpid(pid, 0)
        client.close(5)
        """
    )
    script = CHILD_SCRIPT.replace("BODY", body)
    done = subprocess.run(
        [sys.executable, "-c", script, platform.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = sorted(e["name"] for e in platform.events)
    assert names == ["child", "parent-0", "parent-1", "parent-2", "parent-3", "parent-4"]
    assert platform.duplicates == 0


def test_a_script_that_never_closes_still_delivers_at_exit(platform: FaultFront) -> None:
    script = CHILD_SCRIPT.replace("BODY", "print('exiting without close')")
    done = subprocess.run(
        [sys.executable, "-c", script, platform.url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(e["name"] for e in platform.events) == [f"parent-{i}" for i in range(5)]


async def test_the_async_client_never_blocks_the_event_loop(platform: FaultFront) -> None:
    """A ticker keeps ticking while every kind of call waits on a slow platform."""
    platform.delay = 0.6
    platform.review_approvals(True, on_poll=2)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    client = AsyncTracengentClient(options(platform))
    await client.authorize("flights:book")  # first call: the token fetch runs off the loop
    await client.ensure_authorized("payments:refund", {"amount": 400})  # pending, then polled
    for i in range(50):
        client.record(AgentEvent(name=str(i)))
    assert await client.flush(10)
    await client.close()
    stop.set()
    await ticking
    assert len(platform.events) == 50
    assert max(gaps) < 0.45, max(gaps)  # any sync wait on the 0.6 s platform would show here


def test_bad_options_fail_at_construction() -> None:
    from tracengent import TracengentConfigError

    with pytest.raises(TracengentConfigError, match="agent_id"):
        TracengentClient(TracengentOptions(ingest_key="agk_demo"))
    with pytest.raises(TracengentConfigError, match="base_url"):
        AsyncTracengentClient(TracengentOptions(agent_id="a", ingest_key="k", base_url="ftp://x"))
