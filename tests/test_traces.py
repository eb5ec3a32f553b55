"""Decision traces: event chaining, ambient context, failure, and the Close op."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading

import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    LlmCallResult,
    Money,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
    current_trace,
)

from ._recording import RecordingPlatform

OPTIONS = {"agent_id": "demo-agent", "client_id": "key_demo", "client_secret": "ags_demo"}


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
def client(platform: RecordingPlatform) -> TracengentClient:
    return TracengentClient(TracengentOptions(**OPTIONS), transport=platform.transport)  # type: ignore[arg-type]


def events(platform: RecordingPlatform) -> list[dict[str, object]]:
    return [event for batch in platform.sent("/v1/ingest/events") for event in batch]


def test_events_chain_and_carry_the_trace(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    with client.begin_trace("book a trip", actor_user_id="u_1") as trace:
        assert current_trace() is trace
        trace.step("search first", attributes={"why": "cheapest"})
        assert trace.track_tool_call("search-flights", lambda: ["TP123"], input={"to": "LIS"}) == [
            "TP123"
        ]
        assert trace.track_action("charge", lambda: "ok", cost=Money.eur(280)) == "ok"
        trace.record(AgentEvent(name="note", type="decision"))
    assert current_trace() is None
    client.close()

    sent = events(platform)
    assert [e["name"] for e in sent] == ["search first", "search-flights", "charge", "note"]
    assert {e["traceId"] for e in sent} == {trace.trace_id}
    assert [e.get("parentEventId") for e in sent] == [None] + [e["eventId"] for e in sent[:-1]]
    assert [("rootRequest" in e) for e in sent] == [True, False, False, False]
    assert sent[0]["rootRequest"] == "book a trip"
    assert all(e["actor"] == {"userId": "u_1"} for e in sent)
    assert sent[0]["type"] == "decision" and sent[0]["attributes"] == {"why": "cheapest"}
    assert sent[1]["output"] == ["TP123"] and sent[1]["input"] == {"to": "LIS"}
    assert sent[2]["cost"] == {"amount": 280, "currency": "EUR"}
    assert all(isinstance(e["durationMs"], int) for e in sent[1:3])
    [close] = platform.sent("/v1/ingest/traces")
    assert close["traceId"] == trace.trace_id and close["status"] == "completed"


def test_a_failing_call_is_recorded_reraised_and_fails_the_trace(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    def boom() -> None:
        raise TimeoutError("flights API timed out")

    with client.begin_trace("book") as trace, pytest.raises(TimeoutError):
        trace.track_tool_call("search", boom)
    client.close()
    [event] = events(platform)
    assert event["status"] == "failure"
    assert event["output"] == {"error": "flights API timed out"}
    assert platform.sent("/v1/ingest/traces")[0]["status"] == "failed"


def test_leaving_the_block_on_an_exception_fails_the_trace(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    with pytest.raises(KeyError), client.begin_trace("x"):
        raise KeyError("nope")
    client.close()
    assert platform.sent("/v1/ingest/traces")[0]["status"] == "failed"


def test_complete_sets_status_and_summary_and_close_is_idempotent(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    trace = client.begin_trace("x")
    trace.complete("failure", summary="card declined")
    trace.close()
    trace.close()
    client.close()
    [close] = platform.sent("/v1/ingest/traces")
    assert (close["status"], close["summary"]) == ("failed", "card declined")


def test_closing_from_another_thread_or_context_does_not_raise(client: TracengentClient) -> None:
    trace = client.begin_trace("x")
    errors: list[BaseException] = []

    def close() -> None:
        try:
            trace.close()
        except BaseException as error:  # noqa: BLE001 - the assertion below shows it
            errors.append(error)

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(5)
    other = client.begin_trace("y")
    contextvars.copy_context().run(other.close)
    assert errors == []
    client.close()


def test_the_close_op_follows_the_traces_events(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    with client.begin_trace("x") as trace:
        for i in range(250):
            trace.step(f"step {i}")
    client.close()
    paths = [r.url.path for r in platform.requests if r.url.path.startswith("/v1/ingest")]
    assert paths[-1] == "/v1/ingest/traces"
    assert len(events(platform)) == 250


def test_trace_flows_into_copied_contexts_and_tasks(client: TracengentClient) -> None:
    with client.begin_trace("x") as trace:
        assert contextvars.copy_context().run(current_trace) is trace

        async def inside() -> object:
            return await asyncio.create_task(asyncio.sleep(0, result=current_trace()))

        assert asyncio.run(inside()) is trace
    client.close()


def test_llm_call_reserves_then_records_usage(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    with client.begin_trace("x") as trace:
        answer = trace.track_llm_call(
            "summarize",
            lambda: LlmCallResult("short", tokens=900, model="gpt", cost=Money.usd(0.02)),
            estimated_tokens=1000,
        )
    client.close()
    assert answer == "short"
    [ask] = platform.sent("/v1/authorize")
    assert ask == {
        "permission": "llm:call",
        "context": {"estimatedTokens": 1000},
        "traceId": trace.trace_id,
    }
    [event] = events(platform)
    assert event["type"] == "llm_call"
    assert event["usage"] == {"tokens": 900, "model": "gpt"}
    assert event["cost"] == {"amount": 0.02, "currency": "USD"}


def test_a_denied_reservation_never_calls_the_model(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    platform.script(
        "/v1/authorize",
        lambda _r: __import__("httpx").Response(
            200, json={"allowed": False, "status": "denied", "reason": "token budget exceeded"}
        ),
    )
    called: list[int] = []
    with client.begin_trace("x") as trace, pytest.raises(NotAuthorizedException) as denied:
        trace.track_llm_call(
            "summarize", lambda: called.append(1) or LlmCallResult("x", 1), estimated_tokens=10**6
        )
    client.close()
    assert called == []
    assert denied.value.permission == "llm:call"
    assert denied.value.reason == "token budget exceeded"


async def test_async_trace_awaits_sync_and_async_callables(platform: RecordingPlatform) -> None:
    async with AsyncTracengentClient(
        TracengentOptions(**OPTIONS),  # type: ignore[arg-type]
        transport=platform.transport,
    ) as client:

        async def fetch() -> str:
            await asyncio.sleep(0)
            return "async"

        async with client.begin_trace("x") as trace:
            assert await trace.track_tool_call("a", fetch) == "async"
            assert await trace.track_tool_call("s", lambda: "sync") == "sync"
            result = await trace.track_llm_call(
                "llm", lambda: LlmCallResult("v", tokens=3), estimated_tokens=5
            )
            assert result == "v"
            assert current_trace() is trace
        assert current_trace() is None
    names = [e["name"] for e in events(platform)]
    assert names == ["a", "s", "llm"]
    assert platform.sent("/v1/authorize")[0]["traceId"] == trace.trace_id


def test_a_step_records_its_result_as_it_was_when_the_step_ended(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    """The agent may mutate a tool's result afterwards (or from another thread) while the event
    waits in the queue: the event keeps what the tool returned."""
    result = {"flights": ["TP1350"]}
    with client.begin_trace("search") as trace:
        returned = trace.track_tool_call("search", lambda: result, input={"to": "LIS"})
        returned["flights"].append("LH1173")
        returned["extra"] = object()  # not JSON either: it was never the event's
    client.close(5)
    [event] = [e for e in events(platform) if e["name"] == "search"]
    assert event["output"] == {"flights": ["TP1350"]}
    assert event["input"] == {"to": "LIS"}


def test_queued_steps_are_snapshots_the_garbage_collector_lets_go_of() -> None:
    """A backlog of steps (here: the platform never asked) holds no object the agent's garbage
    collections must walk: each step is a plain tuple of text, numbers and JSON bytes."""
    options = TracengentOptions(
        **OPTIONS,
        flush_interval_ms=3_600_000,
        max_batch_size=1_000_000,  # type: ignore[arg-type]
    )
    platform = RecordingPlatform()
    client = TracengentClient(options, transport=platform.transport)
    with client.begin_trace("search") as trace:
        for _ in range(3):
            trace.track_tool_call("search", lambda: {"flights": ["TP1350"], "n": 1})
    queued = [item for item in client._core.dispatcher._queue if type(item) is tuple]
    gc.collect()
    assert len(queued) == 3 and not any(gc.is_tracked(item) for item in queued)
    client.close(5)
    assert [e["output"] for e in events(platform)] == [{"flights": ["TP1350"], "n": 1}] * 3


def test_a_step_whose_values_cannot_be_encoded_is_still_recorded(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    loop: dict[str, object] = {}
    loop["self"] = loop
    with client.begin_trace("odd values") as trace:
        assert trace.track_tool_call("odd", lambda: loop, input=Broken()) is loop
    client.close(5)
    [event] = [e for e in events(platform) if e["name"] == "odd"]
    assert event["status"] == "success" and "input" in event and "output" in event


def test_a_failing_tool_whose_error_cannot_be_printed_still_raises_its_own_error(
    client: TracengentClient, platform: RecordingPlatform
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    def tool() -> None:
        raise Unprintable()

    with pytest.raises(Unprintable), client.begin_trace("odd error") as trace:
        trace.track_tool_call("odd", tool)
    client.close(5)
    [event] = [e for e in events(platform) if e["name"] == "odd"]
    assert event["status"] == "failure"
    assert event["output"] == {"error": "Unprintable (its message could not be read)"}
