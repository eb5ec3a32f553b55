"""The dispatcher's fast encoder writes exactly what the generated model would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import cast

import tracengent_api as api
from hypothesis import given, settings, strategies as st

from tracengent import Actor, AgentEvent, Money, Usage
from tracengent._encode import (
    EventDefaults,
    encode_event,
    encode_object,
    encode_step,
    event_object,
    join_batch,
)
from tracengent._events import StepEvent, StepFields

DEFAULTS = EventDefaults.of("demo-agent", "production", ("eu", "production"))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
maybe_text = st.none() | st.text(max_size=12)

events = st.builds(
    AgentEvent,
    name=st.text(max_size=20),
    type=st.sampled_from(["action", "tool_call", "llm_call", "decision", "custom"]),
    status=st.sampled_from(["success", "failure", "pending"]),
    event_id=st.none() | st.just("evt_fixed"),
    idempotency_key=maybe_text,
    trace_id=maybe_text,
    parent_event_id=maybe_text,
    cost=st.none()
    | st.builds(
        Money,
        st.integers(0, 10**6) | st.floats(0, 1e6) | st.decimals(0, 10**6, places=2),
        st.sampled_from(["EUR", "USD"]),
    ),
    usage=st.none() | st.builds(Usage, st.none() | st.integers(0, 10**6), maybe_text),
    actor=st.none() | st.builds(Actor, maybe_text),
    input=json_values,
    output=json_values,
    attributes=json_values,
    occurred_at=st.none()
    | st.datetimes(timezones=st.just(timezone.utc))
    | st.just("2026-01-01T00:00:00+00:00"),
    duration_ms=st.none() | st.integers(0, 10**9),
    tags=st.none() | st.lists(st.text(max_size=5), max_size=4),
    root_request=maybe_text,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_fast_encoding_equals_the_generated_model(event: AgentEvent) -> None:
    obj = event_object(event, DEFAULTS)
    wire = api.Event.model_validate(obj)
    assert join_batch([encode_object(obj)]) == api.encode_ingest_events([wire])
    assert encode_event(event, DEFAULTS) is not None


steps = st.builds(
    StepEvent,
    name=st.text(max_size=20),
    type=st.sampled_from(["action", "tool_call", "llm_call"]),
    status=st.sampled_from(["success", "failure"]),
    event_id=st.just("evt_step"),
    trace_id=st.just("trc_step"),
    parent_event_id=maybe_text,
    actor=st.none() | st.builds(Actor, maybe_text),
    input=json_values,
    output=json_values,
    cost=st.none() | st.builds(Money, st.integers(0, 10**6), st.sampled_from(["EUR", "USD"])),
    usage=st.none() | st.builds(Usage, st.none() | st.integers(0, 10**6), maybe_text),
    attributes=json_values,
    duration_ms=st.integers(0, 10**9),
    root_request=maybe_text,
    recorded_ns=st.integers(0, 2**62),
)


def queued(step: StepEvent) -> StepFields:
    """What a trace queues for a step: its fields, input/output/attributes as JSON bytes."""
    raw = {name: getattr(step, name) for name in ("input", "output", "attributes")}
    encoded = step._replace(**{k: None if v is None else encode_object(v) for k, v in raw.items()})
    return cast(StepFields, tuple(encoded))


@settings(max_examples=150, deadline=None)
@given(steps)
def test_a_queued_step_encodes_as_the_agent_event_it_stands_for(step: StepEvent) -> None:
    """Trace steps skip AgentEvent and encode their values early; the wire cannot tell."""
    encoded = encode_step(queued(step), DEFAULTS)
    assert encoded is not None
    assert encoded == encode_event(step.agent_event(), DEFAULTS, 0)


def test_a_step_value_that_looks_like_the_placeholder_is_sent_as_written() -> None:
    step = StepEvent("s", "tool_call", "success", "evt_1", "trc_1", None, None,
                     '"@tracengent-raw-0-input"', {"k": "@tracengent-raw-"}, None, None, None,
                     0, None, 0)  # fmt: skip
    assert encode_step(queued(step), DEFAULTS) == encode_event(step.agent_event(), DEFAULTS, 0)


def test_defaults_fill_without_changing_the_event() -> None:
    event = AgentEvent(name="n", tags=["production", "mine"])
    obj = event_object(event, DEFAULTS)
    assert obj["agentId"] == "demo-agent"
    assert obj["eventId"].startswith("evt_")
    assert obj["tags"] == ["production", "eu", "mine"]
    assert event.event_id is None and event.agent_id is None


def test_timestamps_are_utc_iso() -> None:
    plus_two = timezone(timedelta(hours=2))
    obj = event_object(
        AgentEvent(name="n", occurred_at=datetime(2026, 1, 1, 12, tzinfo=plus_two)), DEFAULTS
    )
    assert obj["occurredAt"] == "2026-01-01T10:00:00.000000+00:00"
