"""The public event model and the per-event helpers: ids, timestamps, tags."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, strategies as st

from tracengent import _events
from tracengent._events import (
    Actor,
    AgentEvent,
    EventStatuses,
    EventTypes,
    LlmCallResult,
    Money,
    Usage,
    merge_tags,
    new_id,
    utc_now_iso,
    utc_timestamp,
)

ID = re.compile(r"^evt_[0-9a-f]{32}$")
NOW = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
UTC = timezone.utc
DAY = timedelta(hours=23, minutes=59)


# --- the model keeps 0.1.0's public surface --------------------------------------------------------


def test_constants_are_the_wire_strings() -> None:
    assert (
        EventTypes.ACTION,
        EventTypes.TOOL_CALL,
        EventTypes.LLM_CALL,
        EventTypes.DECISION,
        EventTypes.ERROR,
        EventTypes.LIFECYCLE,
    ) == ("action", "tool_call", "llm_call", "decision", "error", "lifecycle")
    assert (EventStatuses.SUCCESS, EventStatuses.FAILURE, EventStatuses.PENDING) == (
        "success",
        "failure",
        "pending",
    )


def test_agent_event_fields_defaults_and_order_match_0_1() -> None:
    expected = [
        ("name", ""),
        ("type", "action"),
        ("status", "success"),
        ("event_id", None),
        ("idempotency_key", None),
        ("agent_id", None),
        ("trace_id", None),
        ("parent_event_id", None),
        ("cost", None),
        ("usage", None),
        ("actor", None),
        ("input", None),
        ("output", None),
        ("attributes", None),
        ("occurred_at", None),
        ("duration_ms", None),
        ("tags", None),
        ("root_request", None),
    ]
    assert [(f.name, f.default) for f in dataclasses.fields(AgentEvent)] == expected


def test_agent_event_accepts_0_1_positional_and_keyword_construction() -> None:
    event = AgentEvent("search", EventTypes.TOOL_CALL, EventStatuses.FAILURE, input={"q": 1})
    assert (event.name, event.type, event.status, event.input) == (
        "search",
        "tool_call",
        "failure",
        {"q": 1},
    )
    stamped = AgentEvent(occurred_at="2025-01-01T00:00:00Z")
    assert stamped.occurred_at == "2025-01-01T00:00:00Z"


def test_value_classes_defaults() -> None:
    assert Money(5) == Money(5, "USD")
    assert Money.eur(Decimal("1.5")) == Money(Decimal("1.5"), "EUR")
    assert Money.usd(2.5) == Money(2.5, "USD")
    assert (Usage().tokens, Usage().model) == (None, None)
    assert Usage(10, "gpt") == Usage(tokens=10, model="gpt")
    assert Actor().user_id is None
    assert Actor("u1").user_id == "u1"


def test_llm_call_result_is_generic_with_defaults() -> None:
    result = LlmCallResult[str]("hi", 12)
    assert (result.value, result.tokens, result.model, result.cost) == ("hi", 12, None, None)
    assert LlmCallResult[int](1, 2, "m", Money.eur(1)).cost == Money(1, "EUR")


@pytest.mark.parametrize(
    "instance", [Money(1), Usage(), Actor(), AgentEvent(), LlmCallResult(1, 2)], ids=repr
)
def test_event_classes_are_slotted(instance: object) -> None:
    # No per-instance __dict__: cheaper to build and a typo'd attribute fails loudly.
    assert not hasattr(instance, "__dict__")
    with pytest.raises(AttributeError):
        setattr(instance, "not_a_field", 1)  # noqa: B010 - the point is an unknown attribute


def test_model_knows_nothing_about_the_wire() -> None:
    assert not hasattr(AgentEvent, "to_wire")
    assert not hasattr(Money, "to_wire")
    source = Path(_events.__file__).read_text(encoding="utf-8")
    for wire_key in ("eventId", "agentId", "traceId", "occurredAt", "userId", "durationMs"):
        assert wire_key not in source


# --- ids ---------------------------------------------------------------------------------------------


def test_new_id_shape_with_or_without_trailing_underscore() -> None:
    assert ID.match(new_id("evt"))
    assert ID.match(new_id("evt_"))
    assert ID.match(new_id("evt__"))
    assert new_id("trc").startswith("trc_")


def test_new_id_is_unique_and_ordered_within_a_process() -> None:
    ids = [new_id("evt") for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_new_id_is_unique_across_threads() -> None:
    per_thread: list[list[str]] = [[] for _ in range(8)]

    def work(out: list[str]) -> None:
        out.extend(new_id("evt") for _ in range(10_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for out in per_thread for i in out]
    assert len(set(ids)) == 80_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_new_id_is_unique_across_fork() -> None:
    before = new_id("evt")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its ids and leave without running pytest's teardown
        try:
            os.close(read_end)
            payload = "\n".join(new_id("evt") for _ in range(1000)).encode()
            os.write(write_end, payload)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    child = b"".join(chunks).decode().split("\n")
    parent = [new_id("evt") for _ in range(1000)]
    assert len(child) == 1000
    assert all(ID.match(i) for i in child)
    # Without re-seeding, the child's ids would be exactly the parent's next ones.
    assert not set(child) & set(parent)
    assert child[0][4:24] != before[4:24]  # the child drew its own random part


# --- timestamps --------------------------------------------------------------------------------------


def test_utc_now_iso_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    text = utc_now_iso()
    after = datetime.now(UTC)
    assert NOW.match(text)
    assert before <= datetime.fromisoformat(text) <= after


@given(st.integers(min_value=0, max_value=253_402_300_799 * 10**9 + 999_999_999))
def test_utc_now_iso_matches_datetime_for_any_clock(ns: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    with mock.patch.object(_events, "_time_ns", lambda: ns):
        assert utc_now_iso() == expected.isoformat(timespec="microseconds")


def test_utc_now_iso_cache_follows_the_clock_both_ways() -> None:
    base = 1_700_000_000 * 10**9
    clock = iter([base + 1_000, base + 999_999_000, base + 10**9, base - 1])
    with mock.patch.object(_events, "_time_ns", lambda: next(clock)):
        assert utc_now_iso() == "2023-11-14T22:13:20.000001+00:00"
        assert utc_now_iso() == "2023-11-14T22:13:20.999999+00:00"
        assert utc_now_iso() == "2023-11-14T22:13:21.000000+00:00"
        assert utc_now_iso() == "2023-11-14T22:13:19.999999+00:00"


def test_utc_timestamp_naive_is_taken_as_utc() -> None:
    assert utc_timestamp(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05.000000+00:00"


def test_utc_timestamp_aware_is_converted_to_utc() -> None:
    lisbon_summer = timezone(timedelta(hours=1))
    moment = datetime(2025, 7, 1, 12, 0, 0, 250_000, tzinfo=lisbon_summer)
    assert utc_timestamp(moment) == "2025-07-01T11:00:00.250000+00:00"


def test_utc_timestamp_utc_values_keep_their_instant() -> None:
    class Zulu(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

        def tzname(self, dt: datetime | None) -> str:
            return "Z"

        def dst(self, dt: datetime | None) -> None:
            return None

    class Floating(Zulu):  # aware in type, naive in meaning
        def utcoffset(self, dt: datetime | None) -> None:  # type: ignore[override]
            return None

    moment = datetime(2025, 3, 4, 5, 6, 7, 8)
    expected = "2025-03-04T05:06:07.000008+00:00"
    assert utc_timestamp(moment.replace(tzinfo=UTC)) == expected
    assert utc_timestamp(moment.replace(tzinfo=Zulu())) == expected
    assert utc_timestamp(moment.replace(tzinfo=Floating())) == expected


@given(st.datetimes(timezones=st.none() | st.builds(timezone, st.timedeltas(-DAY, DAY))))
def test_utc_timestamp_is_the_same_instant_in_utc(moment: datetime) -> None:
    text = utc_timestamp(moment)
    parsed = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        assert parsed == moment.replace(tzinfo=UTC)
        assert text.endswith("+00:00")
    elif datetime.min.replace(tzinfo=UTC) + DAY < moment < datetime.max.replace(tzinfo=UTC) - DAY:
        assert parsed == moment
        assert text.endswith("+00:00")
    else:  # the UTC instant may not exist in datetime's range; the moment is still kept
        assert parsed == moment


def test_utc_timestamp_string_passes_through_unchanged() -> None:
    text = "2025-01-01T00:00:00Z"
    assert utc_timestamp(text) is text


def test_utc_timestamp_none_is_now() -> None:
    before = datetime.now(UTC)
    text = utc_timestamp(None)
    assert NOW.match(text)
    assert before <= datetime.fromisoformat(text) <= datetime.now(UTC)


def test_utc_timestamp_out_of_range_instant_keeps_its_offset() -> None:
    earliest = datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))
    assert utc_timestamp(earliest) == "0001-01-01T00:00:00.000000+01:00"


# --- tags --------------------------------------------------------------------------------------------


def test_merge_tags_order_dedupe_and_empties() -> None:
    assert merge_tags("prod", ["svc", "prod", "", "eu"], ["eu", "x", "", "svc", "y"]) == [
        "prod",
        "svc",
        "eu",
        "x",
        "y",
    ]


def test_merge_tags_without_environment_or_own() -> None:
    assert merge_tags("", ["a", "b"], None) == ["a", "b"]
    assert merge_tags("", (), None) == []
    assert merge_tags("dev", (), []) == ["dev"]


def test_merge_tags_treats_a_bare_string_as_one_tag() -> None:
    assert merge_tags("prod", "svc", "urgent") == ["prod", "svc", "urgent"]


def test_merge_tags_returns_a_new_list_and_leaves_inputs_alone() -> None:
    defaults = ["a"]
    own = ["b", "a"]
    merged = merge_tags("", defaults, own)
    merged.append("z")
    assert (defaults, own) == (["a"], ["b", "a"])


def _reference_merge(environment: str, defaults: list[str], own: list[str] | None) -> list[str]:
    out: list[str] = []
    for tag in [environment, *defaults, *(own or [])]:
        if tag and tag not in out:
            out.append(tag)
    return out


tag = st.sampled_from(["", "a", "b", "prod", "dev", "x"]) | st.text(max_size=3)


@given(tag, st.lists(tag, max_size=30), st.none() | st.lists(tag, max_size=30))
def test_merge_tags_matches_reference_at_any_size(
    environment: str, defaults: list[str], own: list[str] | None
) -> None:
    # Sizes straddle the short-list/dict switch, so both code paths are held to one rule.
    assert merge_tags(environment, defaults, own) == _reference_merge(environment, defaults, own)
