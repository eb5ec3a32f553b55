"""tracengent.integrations.opentelemetry against the real OpenTelemetry SDK and the embedded platform.

Every test runs against a fresh embedded platform (`tracengent_platform`, the built-in policy);
spans go to an in-memory exporter on a private TracerProvider (the global one is never set).
Scenarios that leave an OpenTelemetry context attached on purpose run in a copied context, so
nothing leaks into the next test.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    LlmCallResult,
    Money,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
)
from tracengent.integrations.opentelemetry import (
    OpenTelemetryInstrumentation,
    instrument_opentelemetry,
)
from tracengent.testing import PlatformRecorder

pytestmark = pytest.mark.usefixtures("tracengent_platform")

Otel = tuple[TracerProvider, InMemorySpanExporter]


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def decisions(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "tracengent.decision"]


def hex_ids(span: ReadableSpan) -> dict[str, str]:
    return {
        "otel.trace_id": f"{trace_id(span):032x}",
        "otel.span_id": f"{span_id(span):016x}",
    }


def no_seat_map() -> Any:
    raise RuntimeError("seat map unavailable")


def slow_booking() -> str:
    time.sleep(0.02)  # a lower bound the span's duration must cover, not a performance check
    return "PNR42"


# --- the end-to-end demo trace -------------------------------------------------------------


def test_a_decision_trace_is_an_invoke_agent_trace_with_gen_ai_spans(
    tracengent_platform: PlatformRecorder, otel: Otel
) -> None:
    provider, exporter = otel
    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        with client.begin_trace("Book me a flight to Lisbon") as trace:
            trace.step("search, pick, then book")
            trace.track_tool_call("search_flights", lambda: ["TP1350"], input={"to": "LIS"})
            chosen = trace.track_llm_call(
                "pick a flight",
                lambda: LlmCallResult("TP1350", 321, "gpt-4o"),
                estimated_tokens=500,
            )
            client.ensure_authorized("flights:book")
            trace.track_action("book", slow_booking, cost=Money.eur(280))
            search = client.tools.authorize_mcp("search_flights", {"to": "LIS"})
            unbound = client.tools.authorize_mcp("cancel_everything", {})
            with pytest.raises(RuntimeError, match="seat map unavailable"):
                trace.track_tool_call("seat_map", no_seat_map)
        assert client.flush(5)

    assert chosen == "TP1350"
    # the default policy binds search_flights to flights:search, which "flights:*" grants
    assert (search.allowed, search.decision.permission) == (True, "flights:search")
    assert not unbound.allowed  # unbound_tools = "deny"

    spans = by_name(exporter)
    assert set(spans) == {
        "invoke_agent demo-agent",
        "execute_tool search_flights",
        "chat gpt-4o",
        "action book",
        "execute_tool seat_map",
    }
    root = spans.pop("invoke_agent demo-agent")
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    assert dict(root.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.id": "demo-agent",
        "gen_ai.agent.name": "demo-agent",
        "tracengent.trace_id": trace.trace_id,
        "tracengent.root_request": "Book me a flight to Lisbon",
    }
    # a failed tool call fails the trace, and the trace span says so
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "the trace failed"
    for span in spans.values():
        assert parent_id(span) == span_id(root) and trace_id(span) == trace_id(root)
        attributes = span.attributes or {}
        assert attributes["tracengent.trace_id"] == trace.trace_id
        assert str(attributes["tracengent.event_id"]).startswith("evt_")
        assert root.start_time is not None and root.end_time is not None
        assert span.start_time is not None and span.end_time is not None
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time

    tool = spans["execute_tool search_flights"]
    assert tool.kind is SpanKind.INTERNAL
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "search_flights"
    assert tool.attributes["gen_ai.tool.call.id"] == tool.attributes["tracengent.event_id"]
    assert tool.status.status_code is StatusCode.UNSET

    chat = spans["chat gpt-4o"]
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o"
    assert chat.attributes["gen_ai.response.model"] == "gpt-4o"
    assert chat.attributes["gen_ai.usage.total_tokens"] == 321
    # llm:call is authorized inside the step, so its decision is on the chat span
    [llm_call] = decisions(chat)
    assert llm_call["tracengent.decision.kind"] == "authorize"
    assert llm_call["tracengent.permission"] == "llm:call"
    assert (llm_call["tracengent.decision.allowed"], llm_call["tracengent.decision.status"]) == (
        True,
        "allowed",
    )

    action = spans["action book"]
    assert action.attributes is not None
    assert action.attributes["tracengent.cost.amount"] == 280
    assert action.attributes["tracengent.cost.currency"] == "EUR"
    assert action.start_time is not None and action.end_time is not None
    assert action.end_time - action.start_time >= 20_000_000  # the real start and end

    failed = spans["execute_tool seat_map"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "RuntimeError: seat map unavailable"
    assert failed.attributes is not None and failed.attributes["error.type"] == "RuntimeError"
    [exception] = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.message"] == "seat map unavailable"

    book, searched, refused = decisions(root)
    assert book["tracengent.permission"] == "flights:book"
    assert book["tracengent.decision.allowed"] is True
    assert searched["tracengent.decision.kind"] == "tool"
    assert searched["gen_ai.tool.name"] == "search_flights"
    assert searched["tracengent.decision.allowed"] is True
    assert refused["gen_ai.tool.name"] == "cancel_everything"
    assert refused["tracengent.decision.allowed"] is False
    assert refused["tracengent.decision.status"] == "denied"
    assert refused["tracengent.decision.reason"] == unbound.decision.reason
    assert "tracengent.approval.id" not in refused  # None values are left out
    # each span event names the decision the platform stored for this trace
    stored = [d.decision_id for d in tracengent_platform.decisions(trace.trace_id)]
    observed = [d["tracengent.decision.id"] for d in (llm_call, book, searched, refused)]
    assert observed == stored
    [allowed] = tracengent_platform.assert_tool_allowed("search_flights", trace.trace_id)
    [denied] = tracengent_platform.assert_tool_denied("cancel_everything", trace.trace_id)
    assert [allowed.decision.decision_id, denied.decision.decision_id] == observed[2:]


def test_a_refused_llm_call_is_a_failed_chat_span_with_its_decision(
    tracengent_platform: PlatformRecorder, otel: Otel
) -> None:
    provider, exporter = otel
    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        with client.begin_trace("Write a novel") as trace:
            with pytest.raises(NotAuthorizedException):  # over the 50 000-token budget
                trace.track_llm_call(
                    "draft", lambda: LlmCallResult("...", 1), estimated_tokens=10**6
                )
            trace.complete("failure", "the token budget is spent")

    spans = by_name(exporter)
    chat, root = spans["chat"], spans["invoke_agent demo-agent"]
    assert parent_id(chat) == span_id(root)
    assert chat.status.status_code is StatusCode.ERROR
    assert "tracengent.event_id" not in (chat.attributes or {})  # the model was never called
    [refused] = decisions(chat)
    assert refused["tracengent.permission"] == "llm:call"
    assert refused["tracengent.decision.allowed"] is False
    [stored] = tracengent_platform.assert_denied("llm:call", trace.trace_id)
    assert refused["tracengent.decision.id"] == stored.decision_id
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "the token budget is spent"


async def test_the_async_client_traces_the_same_shape(otel: Otel) -> None:
    provider, exporter = otel
    tracer = provider.get_tracer("the-agent")

    async def search(to: str) -> list[str]:
        await asyncio.sleep(0)
        with tracer.start_as_current_span(f"http GET /flights?to={to}"):
            return [f"{to}1"]

    async with AsyncTracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        async with client.begin_trace("Compare Lisbon and Porto") as trace:
            found = await asyncio.gather(
                trace.track_tool_call("search LIS", lambda: search("LIS")),
                trace.track_tool_call("search OPO", lambda: search("OPO")),
            )
            await trace.track_llm_call("compare", lambda: LlmCallResult("LIS", 42))
            guard = await client.tools.authorize_mcp("book_flight", {"flight": "LIS1"})
        assert await client.flush(5)

    assert list(found) == [["LIS1"], ["OPO1"]] and guard.allowed
    spans = by_name(exporter)
    root = spans["invoke_agent demo-agent"]
    assert root.parent is None and root.status.status_code is StatusCode.UNSET
    for to in ("LIS", "OPO"):  # concurrent steps are siblings, each over its own user span
        tool = spans[f"execute_tool search {to}"]
        assert parent_id(tool) == span_id(root)
        assert parent_id(spans[f"http GET /flights?to={to}"]) == span_id(tool)
    chat = spans["chat"]  # no model known: the name is just the operation
    assert parent_id(chat) == span_id(root)
    assert chat.attributes is not None and chat.attributes["gen_ai.usage.total_tokens"] == 42
    assert "gen_ai.request.model" not in chat.attributes
    [booked] = decisions(root)
    assert (booked["gen_ai.tool.name"], booked["tracengent.decision.allowed"]) == (
        "book_flight",
        True,
    )
    assert trace.trace_id == (root.attributes or {})["tracengent.trace_id"]


def test_a_step_tracked_on_a_worker_thread_is_still_the_traces_child(otel: Otel) -> None:
    provider, exporter = otel
    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        with client.begin_trace("Fan out") as trace:
            worker = threading.Thread(  # a plain thread: it does not inherit the context
                target=trace.track_tool_call, args=("search_hotels", lambda: ["H1"])
            )
            worker.start()
            worker.join(5)
            assert not worker.is_alive()
    spans = by_name(exporter)
    tool, root = spans["execute_tool search_hotels"], spans["invoke_agent demo-agent"]
    assert parent_id(tool) == span_id(root) and trace_id(tool) == trace_id(root)


# --- correlation both ways -----------------------------------------------------------------


def test_events_and_spans_name_each_other(
    tracengent_platform: PlatformRecorder, otel: Otel
) -> None:
    provider, exporter = otel
    tracer = provider.get_tracer("the-agent")
    mine = {"customer": "c-7"}
    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        with tracer.start_as_current_span("handle request"):
            client.record(AgentEvent(name="plain", attributes=mine))
            client.record(AgentEvent(name="read-only", attributes=MappingProxyType({"k": 1})))
        client.record(AgentEvent(name="no span"))
        with client.begin_trace("Find a hotel") as trace:
            trace.track_tool_call("search_hotels", lambda: ["H1"])
        assert client.flush(5)

    assert mine == {"customer": "c-7"}  # the user's dict is not touched
    spans = by_name(exporter)
    events = {event["name"]: event for event in tracengent_platform.events()}
    assert events["plain"]["attributes"] == {"customer": "c-7", **hex_ids(spans["handle request"])}
    assert events["read-only"]["attributes"] == {"k": 1, **hex_ids(spans["handle request"])}
    assert events["no span"].get("attributes") is None

    tool_span, tool_event = spans["execute_tool search_hotels"], events["search_hotels"]
    assert tool_event["attributes"] == hex_ids(tool_span)
    assert tool_span.attributes is not None
    assert tool_span.attributes["tracengent.event_id"] == tool_event["eventId"]
    assert tool_span.attributes["tracengent.trace_id"] == tool_event["traceId"] == trace.trace_id


class _Unreadable(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot be read")

    def __len__(self) -> int:
        return 1


def test_odd_attributes_are_left_alone(otel: Otel) -> None:
    provider, _ = otel
    odd: list[Any] = [["a", "list"], "a string", _Unreadable()]
    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        with provider.get_tracer("the-agent").start_as_current_span("work"):
            recorded = [AgentEvent(name=f"odd {i}", attributes=a) for i, a in enumerate(odd)]
            for event in recorded:
                client.record(event)
            client.record("not an event")  # type: ignore[arg-type]
    assert [event.attributes for event in recorded] == odd
    assert all(event.attributes is a for event, a in zip(recorded, odd, strict=True))


# --- no instrumentation, no cost ------------------------------------------------------------


def _agent_work(client: TracengentClient) -> None:
    with client.begin_trace("Book a hotel") as trace:
        trace.track_tool_call("search_hotels", lambda: ["H1"])
        client.ensure_authorized("hotels:book")


def test_an_uninstrumented_client_makes_no_spans_and_adds_no_ids(
    tracengent_platform: PlatformRecorder, otel: Otel
) -> None:
    provider, exporter = otel
    with TracengentClient(TracengentOptions.local()) as client:
        with provider.get_tracer("the-agent").start_as_current_span("request"):
            _agent_work(client)
        instrumentation = instrument_opentelemetry(client, provider)
        assert instrumentation.instrumented and client._core.observer is not None
        instrumentation.uninstrument()
        assert not instrumentation.instrumented and client._core.observer is None
        with provider.get_tracer("the-agent").start_as_current_span("request"):
            _agent_work(client)
        assert client.flush(5)

    assert [span.name for span in exporter.get_finished_spans()] == ["request", "request"]
    events = tracengent_platform.events()
    assert len(events) == 2
    assert all(event.get("attributes") is None for event in events)


def test_instrumenting_again_returns_or_replaces_cleanly(otel: Otel) -> None:
    provider, exporter = otel
    other = TracerProvider()
    with TracengentClient(TracengentOptions.local()) as client:
        first = instrument_opentelemetry(client, provider)
        assert instrument_opentelemetry(client, provider) is first
        second = instrument_opentelemetry(client, other)  # another provider replaces it
        assert isinstance(second, OpenTelemetryInstrumentation) and second is not first
        assert second.instrumented and not first.instrumented
        first.uninstrument()  # no longer installed: leaves the newer one alone
        assert second.instrumented
        second.uninstrument()
        assert client._core.observer is None
        _agent_work(client)
    assert exporter.get_finished_spans() == ()
    with pytest.raises(TypeError, match="TracengentClient"):
        instrument_opentelemetry(object(), provider)  # type: ignore[arg-type]


def test_uninstrumenting_mid_trace_ends_its_spans_without_leaking_context(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = otel
    caplog.set_level(logging.DEBUG)

    def scenario() -> None:
        with TracengentClient(TracengentOptions.local()) as client:
            instrumentation = instrument_opentelemetry(client, provider)
            with client.begin_trace("Book a hotel") as trace:
                trace.track_tool_call("search_hotels", instrumentation.uninstrument)
                trace.track_tool_call("unobserved", lambda: None)
            # neither the ended trace span nor the step's is left current here
            assert not otel_trace.get_current_span().get_span_context().is_valid

    contextvars.copy_context().run(scenario)
    spans = by_name(exporter)
    assert set(spans) == {"invoke_agent demo-agent", "execute_tool search_hotels"}
    assert parent_id(spans["execute_tool search_hotels"]) == span_id(
        spans["invoke_agent demo-agent"]
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if "observer failed" in r.getMessage()]


# --- closing elsewhere ----------------------------------------------------------------------


def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing logged: neither OpenTelemetry's "Failed to detach context" nor an observer failure."""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if "observer failed" in r.getMessage()]


def test_a_trace_closed_from_another_thread_or_context_ends_quietly(
    tracengent_platform: PlatformRecorder, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = otel
    caplog.set_level(logging.DEBUG)

    def scenario(client: TracengentClient) -> None:
        elsewhere = client.begin_trace("closed by a worker thread")
        worker = threading.Thread(target=elsewhere.close)
        worker.start()
        worker.join(5)
        assert not worker.is_alive()
        fresh = client.begin_trace("closed in a fresh context")
        contextvars.Context().run(fresh.close)
        with client.begin_trace("an ordinary trace") as trace:
            trace.step("after the others")
        client.record(AgentEvent(name="after all traces"))

    with TracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        contextvars.copy_context().run(scenario, client)
        assert client.flush(5)

    _quiet(caplog)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["invoke_agent demo-agent"] * 3
    # a trace another context closed is not left as the parent of the next one
    assert [span.parent for span in spans] == [None, None, None]
    assert len({trace_id(span) for span in spans}) == 3
    events = {event["name"]: event for event in tracengent_platform.events()}
    assert events["after the others"]["attributes"] == hex_ids(spans[2])
    assert events["after all traces"].get("attributes") is None


async def test_an_async_trace_closed_in_another_task_ends_quietly(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = otel
    caplog.set_level(logging.DEBUG)

    async def close_it(trace: Any) -> None:
        await trace.__aexit__(None, None, None)
        # the task inherited the trace's context; here too the ended span stops being current
        assert not otel_trace.get_current_span().get_span_context().is_valid

    async with AsyncTracengentClient(TracengentOptions.local()) as client:
        instrument_opentelemetry(client, provider)
        trace = client.begin_trace("handed to a task")
        await asyncio.wait_for(asyncio.create_task(close_it(trace)), 5)
        async with client.begin_trace("the next one"):
            pass

    _quiet(caplog)
    first, second = exporter.get_finished_spans()
    assert first.parent is None and second.parent is None
    assert trace_id(first) != trace_id(second)


# --- packaging ------------------------------------------------------------------------------


def test_without_opentelemetry_the_import_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "tracengent.integrations.opentelemetry")
    with pytest.raises(ImportError, match=r'pip install "tracengent\[otel\]"'):
        import tracengent.integrations.opentelemetry  # noqa: F401
