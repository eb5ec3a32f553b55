"""Faults in front of the real platform over real HTTP (tests/_fault_front.py): the retry rules and the deadlines.

Retry rules: 429/500/502/503/504, disconnects, read timeouts and refused connections are retried
with jittered backoff; `Retry-After` (seconds or an HTTP date) is honoured, garbage ignored and
huge values capped; any other 4xx drops the batch at once; a 413 splits it; two clients failing
together do not retry in lockstep. Deadlines: a blackholed platform (accepts, never answers)
blocks neither `record()` nor `close()`, and `authorize()` and every governed call come back as
a deny within `authorize_timeout_s` (plus a grace for scheduling), never as an allow.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    AuthDecision,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    async_governed_client,
    governed_client,
)
from tracengent.platform import DEFAULT_POLICY_TOML

from ._fault_front import EVENTS_PATH, TOKEN_PATH, FaultFront, RecordedRequest

pytestmark = pytest.mark.integration

FAST: dict[str, object] = {"flush_interval_ms": 20, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
GRACE_S = 1.0
"""Scheduling slack on top of a configured timeout; a deadline property, not a speed claim."""
AUTHORIZE_TIMEOUT_S = 0.5
REQUEST_TIMEOUT_S = 2.0
"""Longer than AUTHORIZE_TIMEOUT_S + GRACE_S on purpose: a governance call that waits for a
telemetry-sized timeout instead of its own deadline shows up as a failure, not as a pass."""
CREDENTIALS = ("ingest_key", "token_cached", "token_not_yet_fetched")
# The demo policy's agent (tracengent/platform/demo_policy.toml).
DEMO_AGENT_ID, DEMO_INGEST_KEY = "demo-agent", "agk_demo"
DEMO_CLIENT_ID, DEMO_CLIENT_SECRET = "key_demo", "ags_demo"


@pytest.fixture
def platform() -> Iterator[FaultFront]:
    with FaultFront() as front:
        yield front
    assert front.errors == []


def options(platform: FaultFront, credentials: str = "ingest_key", **overrides: object) -> Any:
    values: dict[str, object] = {"agent_id": DEMO_AGENT_ID, "base_url": platform.url, **FAST}
    if credentials == "ingest_key":
        values["ingest_key"] = DEMO_INGEST_KEY
    else:
        values.update(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET)
    values.update(overrides)
    return TracengentOptions(**values)  # type: ignore[arg-type]


def events(prefix: str, n: int) -> list[AgentEvent]:
    return [AgentEvent(name=f"{prefix}-{i}", event_id=f"evt_{prefix}_{i}") for i in range(n)]


def batch_ids(request: RecordedRequest) -> list[str]:
    return [str(e["eventId"]) for e in request.json()]


def arrival_gap(platform: FaultFront) -> float:
    first, second = platform.requests_to(EVENTS_PATH)[:2]
    return second.time - first.time


def send_one(platform: FaultFront, **overrides: object) -> TracengentClient:
    """Record one event, wait until it was delivered (or given up on) and close the client."""
    client = TracengentClient(options(platform, **overrides))
    client.record(AgentEvent(name="e", event_id="evt_one"))
    assert client.flush(15)
    client.close(1)
    return client


def stats(client: TracengentClient) -> Any:
    return client._core.dispatcher.stats


# --- transient failures are retried ------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_transient_answer_is_retried_and_the_batch_stored_once(
    platform: FaultFront, status: int
) -> None:
    platform.fail_next(EVENTS_PATH, status, times=2)
    with TracengentClient(options(platform)) as client:
        for event in events("t", 5):
            client.record(event)
        assert client.flush(10)
    sent = platform.requests_to(EVENTS_PATH)
    assert [r.status for r in sent] == [status, status, 202]
    assert len({r.body for r in sent}) == 1  # the same bytes, resent
    assert sorted(platform.event_ids()) == sorted(e.event_id or "" for e in events("t", 5))
    assert platform.duplicates == 0
    assert client.dropped_count == 0 and stats(client).delivered == 5


@pytest.mark.parametrize("fault", ["disconnect", "disconnect_after_storing", "read_timeout"])
def test_a_transport_error_is_retried(platform: FaultFront, fault: str) -> None:
    if fault == "disconnect":
        platform.drop_next(EVENTS_PATH, times=2)
    elif fault == "disconnect_after_storing":
        platform.drop_next(EVENTS_PATH, times=1, process=True)
    else:
        platform.hold_next(EVENTS_PATH, times=1)
    with TracengentClient(options(platform, request_timeout_s=0.3)) as client:
        for event in events("t", 4):
            client.record(event)
        assert client.flush(10)
    assert sorted(platform.event_ids()) == [f"evt_t_{i}" for i in range(4)]
    assert client.dropped_count == 0 and stats(client).delivered == 4
    expected_tries = 3 if fault == "disconnect" else 2
    assert len(platform.requests_to(EVENTS_PATH)) == expected_tries
    # A batch stored before its answer was lost comes back as duplicates, never twice over.
    assert platform.duplicates == (4 if fault == "disconnect_after_storing" else 0)


def test_the_platform_going_down_and_coming_back_loses_nothing(platform: FaultFront) -> None:
    platform.down = True
    client = TracengentClient(options(platform, backoff_base_s=0.05, backoff_max_s=0.2))
    for event in events("d", 20):
        client.record(event)
    assert platform.wait_for_requests(EVENTS_PATH, 3, timeout=10)  # it is retrying
    platform.down = False
    assert client.flush(10)
    client.close(1)
    assert sorted(platform.event_ids()) == sorted(e.event_id or "" for e in events("d", 20))
    assert client.dropped_count == 0


class _CountingTransport(httpx.BaseTransport):
    """A real HTTP transport that remembers every transport error it raised."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.errors: list[type[Exception]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.inner.handle_request(request)
        except httpx.TransportError as error:
            self.errors.append(type(error))
            raise

    def close(self) -> None:
        self.inner.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


def test_a_refused_connection_is_retried_up_to_max_retries() -> None:
    transport = _CountingTransport()
    opts = TracengentOptions(
        agent_id=DEMO_AGENT_ID,
        base_url=f"http://127.0.0.1:{_closed_port()}",
        ingest_key=DEMO_INGEST_KEY,
        max_retries=3,
        **FAST,  # type: ignore[arg-type]
    )
    client = TracengentClient(opts, transport=transport)
    client.record(AgentEvent(name="e"))
    assert client.flush(10)
    client.close(1)
    assert transport.errors == [httpx.ConnectError] * 4  # the first try and three retries
    assert stats(client).dropped["undeliverable"] == 1 and stats(client).delivered == 0


# --- Retry-After ------------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_out(platform: FaultFront) -> None:
    platform.fail_next(EVENTS_PATH, 503, retry_after=1)  # 429 with seconds: see test_e2e
    send_one(platform)
    assert arrival_gap(platform) >= 1.0
    assert platform.event_ids() == ["evt_one"]


def test_retry_after_as_an_http_date_is_waited_out(platform: FaultFront) -> None:
    # IMF-fixdate has whole seconds: "now + 2 s" is 1 to 2 s away once formatted.
    platform.fail_next(
        EVENTS_PATH, 429, retry_after=email.utils.formatdate(time.time() + 2, usegmt=True)
    )
    send_one(platform, max_retry_after_s=10)
    gap = arrival_gap(platform)
    assert 0.8 <= gap <= 2 + GRACE_S, gap  # without the header the backoff is at most 0.05 s
    assert platform.event_ids() == ["evt_one"]


@pytest.mark.parametrize(
    "value",
    [
        "86400",
        "1e308",
        "inf",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        email.utils.formatdate(time.time() + 86_400, usegmt=True),
    ],
)
def test_a_huge_retry_after_is_capped(platform: FaultFront, value: str) -> None:
    platform.fail_next(EVENTS_PATH, 429, retry_after=value)
    send_one(platform, max_retry_after_s=0.3)
    gap = arrival_gap(platform)
    assert 0.3 <= gap <= 0.3 + GRACE_S, gap
    assert platform.event_ids() == ["evt_one"]


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        "-5",
        "NaN",
        "1e",
        "0x10",
        "Wed, 99 Foo 2025 25:61:61 GMT",
        "Wed, 21 Oct 2015 07:28:00 -0000",  # no usable zone
        "Wed, 21 Oct 2015 07:28:00 GMT",  # in the past: no wait, not an error
    ],
)
def test_a_garbage_retry_after_is_ignored(platform: FaultFront, value: str) -> None:
    platform.fail_next(EVENTS_PATH, 503, retry_after=value)
    send_one(platform, max_retry_after_s=3)
    # Misread as "huge", it would be capped to 3 s; ignored, only the 0.05 s backoff remains.
    assert arrival_gap(platform) < 2.0
    assert platform.event_ids() == ["evt_one"]


# --- permanent rejections and 413 ---------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422])
def test_another_4xx_drops_the_batch_without_a_retry(platform: FaultFront, status: int) -> None:
    platform.fail_next(EVENTS_PATH, status)
    client = TracengentClient(options(platform))
    for event in events("bad", 3):
        client.record(event)
    assert client.flush(10)
    client.record(AgentEvent(name="after", event_id="evt_after"))
    client.close(5)
    assert [r.status for r in platform.requests_to(EVENTS_PATH)] == [status, 202]
    assert platform.event_ids() == ["evt_after"]
    assert stats(client).dropped["rejected"] == 3 and client.dropped_count == 3


def test_a_413_splits_the_batch_and_nothing_is_sent_twice(platform: FaultFront) -> None:
    platform.fail_next(EVENTS_PATH, 413)
    with TracengentClient(options(platform)) as client:
        for event in events("s", 8):
            client.record(event)
        assert client.flush(10)
    sent = platform.requests_to(EVENTS_PATH)
    assert [len(batch_ids(r)) for r in sent] == [8, 4, 4]
    assert batch_ids(sent[1]) + batch_ids(sent[2]) == batch_ids(sent[0])
    assert sorted(platform.event_ids()) == sorted(batch_ids(sent[0]))
    assert platform.duplicates == 0 and client.dropped_count == 0


def test_batches_are_split_until_they_fit_the_platforms_limit(platform: FaultFront) -> None:
    platform.use_policy(DEFAULT_POLICY_TOML, max_body_bytes=3000)
    client = TracengentClient(options(platform, gzip_threshold_bytes=10**9, max_batch_size=40))
    recorded = events("big", 40)
    for event in recorded:
        event.input = "x" * 300
        client.record(event)
    assert client.flush(10)
    client.close(1)
    sent = platform.requests_to(EVENTS_PATH)
    assert any(r.status == 413 for r in sent)
    assert all(r.raw_size <= 3000 for r in sent if r.status == 202)
    assert sorted(platform.event_ids()) == sorted(e.event_id or "" for e in recorded)
    assert platform.duplicates == 0 and client.dropped_count == 0


# --- two clients do not retry together ----------------------------------------------------------


def test_two_clients_failing_together_do_not_retry_in_lockstep(platform: FaultFront) -> None:
    retries = 5
    platform.fail_next(EVENTS_PATH, 503, times=2 * (retries + 1))
    clients = {
        agent: TracengentClient(
            options(
                platform,
                agent_id=agent,
                max_retries=retries,
                backoff_base_s=0.05,
                backoff_max_s=0.5,
                flush_interval_ms=60_000,  # only the flush below sends
            )
        )
        for agent in ("agent-a", "agent-b")
    }
    for agent, client in clients.items():
        client.record(AgentEvent(name="e", event_id=f"evt_{agent}"))
    start = threading.Barrier(len(clients))
    results: list[bool] = []

    def flush(client: TracengentClient) -> None:
        start.wait(5)
        results.append(client.flush(15))

    threads = [threading.Thread(target=flush, args=(c,)) for c in clients.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    for client in clients.values():
        client.close(1)
    assert results == [True, True]

    arrivals: dict[str, list[float]] = {agent: [] for agent in clients}
    for request in platform.requests_to(EVENTS_PATH):
        arrivals[request.json()[0]["agentId"]].append(request.time)
    gaps = {
        agent: [b - a for a, b in itertools.pairwise(times)] for agent, times in arrivals.items()
    }
    assert [len(g) for g in gaps.values()] == [retries, retries]  # every retry was made
    for agent_gaps in gaps.values():  # each wait is a draw from its doubling window
        windows = [min(0.5, 0.05 * 2**n) for n in range(retries)]
        assert all(gap <= window + 0.25 for gap, window in zip(agent_gaps, windows, strict=True))
    a, b = gaps.values()
    assert any(abs(x - y) > 0.01 for x, y in zip(a, b, strict=True)), (a, b)
    assert all(c.dropped_count == 1 for c in clients.values())


# --- a blackholed platform: accepts, never answers ------------------------------------------------


def test_record_never_blocks_and_close_keeps_its_timeout_on_a_blackhole(
    platform: FaultFront,
) -> None:
    platform.max_hold = 30.0
    platform.blackhole = True
    client = TracengentClient(options(platform, "token_not_yet_fetched", request_timeout_s=10))
    client.record(AgentEvent(name="first"))
    assert platform.wait_for(lambda: len(platform.requests) >= 1, timeout=5)  # now stuck

    def record_many() -> None:
        for i in range(10_000):
            client.record(AgentEvent(name=str(i)))

    recorder = threading.Thread(target=record_many)
    recorder.start()
    recorder.join(30)  # a deadline, not a speed claim: record() must not wait on the platform
    assert not recorder.is_alive()

    started = time.monotonic()
    client.close(timeout=1)
    took = time.monotonic() - started
    assert took <= 1 + GRACE_S, took
    assert stats(client).delivered == 0
    assert client.dropped_count == 10_001  # every event counted, exactly once
    platform.blackhole = False


def _blackholed_client(
    platform: FaultFront, credentials: str, **overrides: object
) -> TracengentClient:
    timeouts: dict[str, object] = {
        "authorize_timeout_s": AUTHORIZE_TIMEOUT_S,
        "request_timeout_s": REQUEST_TIMEOUT_S,
    }
    client = TracengentClient(options(platform, credentials, **{**timeouts, **overrides}))
    if credentials == "token_cached":
        assert client.authorize("flights:book").allowed  # fetches and caches the token
    platform.blackhole = True
    return client


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result: Any = call()
    except Exception as error:  # noqa: BLE001 - the caller asserts on what came back
        result = error
    return result, time.monotonic() - started


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_authorize_against_a_blackhole_is_a_deny_within_its_deadline(
    platform: FaultFront, credentials: str
) -> None:
    client = _blackholed_client(platform, credentials)
    decision, took = _timed(lambda: client.authorize("payments:refund", {"amount": 1}))
    platform.blackhole = False
    client.close(1)
    assert isinstance(decision, AuthDecision) and decision.allowed is False
    assert decision.status == "denied" and "did not answer in time" in decision.reason
    assert took <= AUTHORIZE_TIMEOUT_S + GRACE_S, took


def test_the_deadline_covers_the_token_fetch_and_the_call_together(
    platform: FaultFront,
) -> None:
    """A slow token endpoint eats into the same deadline: no decision comes after it."""
    platform.delay = 1.0  # every answer takes 1 s: the token, then the decision (2 s in all)
    client = TracengentClient(
        options(platform, "token_not_yet_fetched", authorize_timeout_s=1.2, request_timeout_s=10)
    )
    decision, took = _timed(lambda: client.authorize("flights:book"))
    platform.delay = 0.0
    client.close(1)
    assert isinstance(decision, AuthDecision)
    assert took <= 1.2 + 0.5, (took, decision)
    assert decision.allowed is False and "did not answer in time" in decision.reason


def test_concurrent_authorizers_each_get_their_deny_within_the_deadline(
    platform: FaultFront,
) -> None:
    """No caller waits for the others: four threads, four denies, each within the deadline."""
    client = _blackholed_client(platform, "token_not_yet_fetched", request_timeout_s=1.6)
    results: list[tuple[Any, float]] = []

    def ask() -> None:
        results.append(_timed(lambda: client.authorize("flights:book")))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    platform.blackhole = False
    client.close(1)
    assert len(results) == 4
    assert all(isinstance(d, AuthDecision) and not d.allowed for d, _ in results)
    took = sorted(t for _, t in results)
    assert took[-1] <= AUTHORIZE_TIMEOUT_S + GRACE_S, took


@pytest.mark.parametrize("credentials", ["ingest_key", "token_not_yet_fetched"])
async def test_async_authorize_against_a_blackhole_is_a_deny_within_its_deadline(
    platform: FaultFront, credentials: str
) -> None:
    client = AsyncTracengentClient(
        options(
            platform,
            credentials,
            authorize_timeout_s=AUTHORIZE_TIMEOUT_S,
            request_timeout_s=REQUEST_TIMEOUT_S,
        )
    )
    platform.blackhole = True
    started = time.monotonic()
    decision = await client.authorize("flights:book")
    took = time.monotonic() - started
    platform.blackhole = False
    await client.close(1)
    assert decision.allowed is False and "did not answer in time" in decision.reason
    assert took <= AUTHORIZE_TIMEOUT_S + GRACE_S, took


@pytest.mark.parametrize(
    ("kind", "credentials"),
    [
        *[(kind, creds) for kind in ("http", "mcp", "function") for creds in CREDENTIALS[:2]],
        ("http", "token_not_yet_fetched"),  # the MCP and function gates share its path
    ],
)
def test_a_governed_call_fails_closed_within_its_deadline(
    platform: FaultFront, kind: str, credentials: str
) -> None:
    reached: list[object] = []

    def tool(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200)

    client = _blackholed_client(platform, credentials)
    calls: dict[str, Callable[[], Any]] = {
        "http": lambda: governed_client(client, inner=httpx.MockTransport(tool)).post(
            "https://api.stripe.com/v1/refunds", json={"amount": 1}
        ),
        "mcp": lambda: client.tools.guard_mcp("search", {"q": "LIS"}, reached.append),
        "function": lambda: client.tools.governed()(lambda amount: reached.append(amount))(5),
    }
    outcome, took = _timed(calls[kind])
    platform.blackhole = False
    client.close(1)
    assert isinstance(outcome, ToolDeniedException), outcome
    assert "fail-closed" in outcome.reason and "did not answer in time" in outcome.reason
    assert reached == []  # the tool never ran
    assert took <= AUTHORIZE_TIMEOUT_S + GRACE_S, took


async def test_an_async_governed_call_fails_closed_within_its_deadline(
    platform: FaultFront,
) -> None:
    reached: list[object] = []

    async def tool(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200)

    client = AsyncTracengentClient(
        options(platform, authorize_timeout_s=AUTHORIZE_TIMEOUT_S, request_timeout_s=5)
    )
    platform.blackhole = True
    http = async_governed_client(client, inner=httpx.MockTransport(tool))
    started = time.monotonic()
    with pytest.raises(ToolDeniedException, match="fail-closed"):
        await http.get("https://api.stripe.com/v1/balance")
    with pytest.raises(ToolDeniedException, match="fail-closed"):
        await client.tools.guard_mcp("search", {"q": 1}, reached.append)
    took = time.monotonic() - started
    platform.blackhole = False
    await http.aclose()
    await client.close(1)
    assert reached == []
    assert took <= 2 * AUTHORIZE_TIMEOUT_S + GRACE_S, took


def test_the_token_endpoint_blackholed_does_not_hold_telemetry_past_close(
    platform: FaultFront,
) -> None:
    """While the dispatcher waits on a token that never comes, close(1) still keeps its timeout."""
    platform.max_hold = 30.0
    platform.hold_next(TOKEN_PATH)
    client = TracengentClient(options(platform, "token_not_yet_fetched", request_timeout_s=20))
    for event in events("h", 10):
        client.record(event)
    assert platform.wait_for_requests(TOKEN_PATH, 1, timeout=5)
    started = time.monotonic()
    client.close(timeout=1)
    took = time.monotonic() - started
    assert took <= 1 + GRACE_S, took
    assert client.dropped_count == 10 and platform.events == []


def test_asyncio_loop_is_free_while_authorize_waits_on_a_blackhole(
    platform: FaultFront,
) -> None:
    """The deny arrives on time and other coroutines keep running meanwhile."""

    async def main() -> tuple[AuthDecision, int]:
        client = AsyncTracengentClient(options(platform, authorize_timeout_s=AUTHORIZE_TIMEOUT_S))
        platform.blackhole = True
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(1000):  # bounded: ~10 s at most, cancelled long before
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        decision = await client.authorize("flights:book")
        ticking.cancel()
        platform.blackhole = False
        await client.close(1)
        return decision, ticks

    decision, ticks = asyncio.run(main())
    assert decision.allowed is False
    assert ticks >= 5  # the loop was not blocked for the whole wait
