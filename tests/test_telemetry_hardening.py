"""Principle 4: every recorded event is delivered or counted, whatever the exit path.

Against `tracengent dev` on 127.0.0.1 (a real HTTP platform in a subprocess, whose store is read
back), sometimes behind a loopback proxy that slows or refuses answers. Each test names an exit
path an event used to be lost on: a mistyped field that made the platform refuse its whole
batch, two closes racing, a multiprocessing child leaving through `os._exit`, the dispatcher
thread dying, a thread that cannot start, a timeout that is not a number.
"""

from __future__ import annotations

import asyncio
import enum
import linecache
import math
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tracengent import (
    Actor,
    AgentEvent,
    AsyncTracengentClient,
    LlmCallResult,
    Money,
    TracengentClient,
    TracengentOptions,
    Usage,
)

from ._served import Exchange, PlatformProxy, Served, served_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("telemetry")) as platform:
        yield platform


def options(url: str, **overrides: Any) -> TracengentOptions:
    values: dict[str, Any] = {
        "agent_id": "demo-agent",
        "base_url": url,
        "ingest_key": "agk_demo",
        "environment": "dev",
        "flush_interval_ms": 50,
        "backoff_base_s": 0.02,
        "backoff_max_s": 0.1,
    }
    values.update(overrides)
    return TracengentOptions(**values)


def stored(served: Served) -> dict[str, dict[str, Any]]:
    """Every event the platform stored, by event id."""
    store = served.store()
    try:
        return {event["eventId"]: event for event in store.events()}
    finally:
        store.close()


def new_ids(n: int, prefix: str = "evt") -> list[str]:
    run = uuid.uuid4().hex[:12]
    return [f"{prefix}_{run}_{i}" for i in range(n)]


def accounted(client: TracengentClient | AsyncTracengentClient) -> int:
    stats = client._core.dispatcher.stats
    return stats.delivered + stats.dropped_total


def at(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# --- 1. a mistyped field costs at most its own event, never its batch --------------------------


class Tokens(enum.IntEnum):
    TWELVE = 12


class Status(str, enum.Enum):
    OK = "success"


@dataclass(frozen=True)
class Case:
    """An event with `fields` set: either delivered with the wire values in `expect`
    (coerced), or, with `expect` None, dropped alone and counted as invalid."""

    id: str
    fields: dict[str, Any]
    expect: dict[str, Any] | None


CASES = [
    # text fields given something else: their text
    Case("actor.userId=123", {"actor": Actor(123)}, {"actor.userId": "123"}),  # type: ignore[arg-type]
    Case("actor as a mapping", {"actor": {"userId": 7}}, {"actor.userId": "7"}),
    Case("usage.model=3", {"usage": Usage(5, 3)}, {"usage.tokens": 5, "usage.model": "3"}),  # type: ignore[arg-type]
    Case("cost.currency=5", {"cost": Money(1, 5)}, {"cost.amount": 1, "cost.currency": "5"}),  # type: ignore[arg-type]
    Case("name=5", {"name": 5}, {"name": "5"}),
    Case("status=str enum", {"status": Status.OK}, {"status": "success"}),
    Case("trace_id=5", {"trace_id": 5}, {"traceId": "5"}),
    Case("idempotency_key=1", {"idempotency_key": 1}, {"idempotencyKey": "1"}),
    Case("root_request=1.5", {"root_request": 1.5}, {"rootRequest": "1.5"}),
    Case("tags with ints and None", {"tags": [1, "ok", None]}, {"tags": ["dev", "1", "ok"]}),
    Case("tags=one string", {"tags": "solo"}, {"tags": ["dev", "solo"]}),
    Case("tags=a tuple", {"tags": ("a", 2)}, {"tags": ["dev", "a", "2"]}),
    # whole numbers given as floats, Decimals, numeric text or an IntEnum: the integer
    Case("usage.tokens=12.0", {"usage": Usage(12.0)}, {"usage.tokens": 12}),  # type: ignore[arg-type]
    Case("usage.tokens='12'", {"usage": Usage("12")}, {"usage.tokens": 12}),  # type: ignore[arg-type]
    Case("usage.tokens=IntEnum", {"usage": Usage(Tokens.TWELVE)}, {"usage.tokens": 12}),
    Case("usage as a mapping", {"usage": {"tokens": 5}}, {"usage.tokens": 5}),
    Case("duration_ms=12.0", {"duration_ms": 12.0}, {"durationMs": 12}),
    Case("duration_ms=Decimal", {"duration_ms": Decimal("7")}, {"durationMs": 7}),
    Case("cost.amount='12'", {"cost": Money("12")}, {"cost.amount": 12}),  # type: ignore[arg-type]
    Case("cost.amount=Decimal 1.50", {"cost": Money(Decimal("1.50"))}, {"cost.amount": 1.5}),
    # payload values the platform refuses to read: made readable
    Case("attributes with a 400-digit int", {"attributes": {"n": 10**400}}, {"attributes.n": "1" + "0" * 400}),
    Case("output with a 310-digit negative int", {"output": [-(10**309)]}, {"output": ["-1" + "0" * 309]}),
    Case("attributes with a key twice", {"attributes": {1: "a", "1": "b", "k": 2}}, {"attributes.k": 2}),
    Case("input with NaN and infinity", {"input": {"x": math.nan, "y": -math.inf}}, {"input.x": "NaN", "input.y": "-Infinity"}),
    # nothing valid can be made of these: the event alone is dropped, and counted
    Case("usage.tokens=1.5", {"usage": Usage(1.5)}, None),  # type: ignore[arg-type]
    Case("usage.tokens=-1", {"usage": Usage(-1)}, None),
    Case("usage.tokens=True", {"usage": Usage(True)}, None),
    Case("usage.tokens=2**53", {"usage": Usage(2**53)}, None),
    Case("usage.tokens=NaN", {"usage": Usage(math.nan)}, None),  # type: ignore[arg-type]
    Case("cost.amount=NaN", {"cost": Money(math.nan)}, None),
    Case("cost.amount=inf", {"cost": Money(math.inf)}, None),
    Case("cost.amount=Decimal NaN", {"cost": Money(Decimal("NaN"))}, None),
    Case("cost.amount=-1", {"cost": Money(-1)}, None),
    Case("cost.amount=10**400", {"cost": Money(10**400)}, None),
    Case("cost.amount='twelve'", {"cost": Money("twelve")}, None),  # type: ignore[arg-type]
    Case("cost.amount=True", {"cost": Money(True)}, None),
    Case("cost.currency=None", {"cost": Money(1, None)}, None),  # type: ignore[arg-type]
    Case("cost='12 EUR'", {"cost": "12 EUR"}, None),
    Case("duration_ms=-3", {"duration_ms": -3}, None),
    Case("duration_ms=NaN", {"duration_ms": math.nan}, None),
    Case("duration_ms=2**60", {"duration_ms": 2**60}, None),
    Case("name=None", {"name": None}, None),
    Case("type=None", {"type": None}, None),
    Case("occurred_at=an epoch int", {"occurred_at": 1_700_000_000}, None),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_mistyped_field_costs_at_most_its_own_event(served: Served, case: Case) -> None:
    before, odd, after = new_ids(3)
    client = TracengentClient(options(served.url))
    client.record(AgentEvent(name="before", event_id=before))
    client.record(AgentEvent(**{"name": "odd", "event_id": odd, **case.fields}))
    client.record(AgentEvent(name="after", event_id=after))
    client.close(10)

    events = stored(served)
    assert before in events and after in events, "a good event was lost with its batch"
    stats = client._core.dispatcher.stats
    assert stats.delivered + stats.dropped_total == 3
    if case.expect is None:
        assert odd not in events
        assert stats.dropped["invalid"] == 1
    else:
        assert odd in events and stats.delivered == 3
        for path, value in case.expect.items():
            assert at(events[odd], path) == value, path


def test_a_trace_for_a_numeric_user_id_keeps_every_step(served: Served) -> None:
    """`begin_trace(actor_user_id=123)` and `LlmCallResult(tokens=12.0)`: each step is sent
    with its text user id and its whole token count, next to the good events."""
    good = new_ids(1)[0]
    client = TracengentClient(options(served.url))
    with client.begin_trace("numeric user", actor_user_id=123) as trace:  # type: ignore[arg-type]
        trace.track_tool_call("search", lambda: {"ok": True})
        trace.track_llm_call("summarize", lambda: LlmCallResult("done", tokens=12.0))  # type: ignore[arg-type]
        trace.track_llm_call("half a token", lambda: LlmCallResult("?", tokens=1.5))  # type: ignore[arg-type]
        trace.step("decided")
    client.record(AgentEvent(name="good", event_id=good))
    client.close(10)

    store = served.store()
    try:
        steps = store.events(trace_id=trace.trace_id)
    finally:
        store.close()
    assert [e["name"] for e in steps] == ["search", "summarize", "decided"]
    assert {e["actor"]["userId"] for e in steps} == {"123"}
    assert steps[1]["usage"]["tokens"] == 12
    assert good in stored(served)
    stats = client._core.dispatcher.stats
    assert stats.delivered == 4 and stats.dropped["invalid"] == 1 and stats.dropped_total == 1


# --- 2. concurrent closes wait for the same delivery -------------------------------------------


def slow_answers(seconds: float) -> Callable[[Exchange], None]:
    def rewrite(_exchange: Exchange) -> None:
        time.sleep(seconds)  # the platform answered; the proxy holds the answer back a while

    return rewrite


def test_two_threads_closing_at_once_both_wait_for_the_delivery(served: Served) -> None:
    ids = new_ids(400)
    with PlatformProxy(served.url, rewrite=slow_answers(0.1)) as proxy:
        client = TracengentClient(options(proxy.url, max_batch_size=40, flush_interval_ms=60_000))
        for event_id in ids:
            client.record(AgentEvent(name="closing", event_id=event_id))
        start = threading.Barrier(2)
        seen: dict[str, int] = {}

        def close(name: str) -> None:
            start.wait(10)
            client.close(30)
            seen[name] = accounted(client)  # what this close() returned after

        threads = [threading.Thread(target=close, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert seen == {"a": 400, "b": 400}
    assert client._core.dispatcher.stats.delivered == 400
    assert set(ids) <= set(stored(served))


def test_a_shorter_second_close_returns_without_closing_the_connection_under_the_first(
    served: Served,
) -> None:
    ids = new_ids(300)
    with PlatformProxy(served.url, rewrite=slow_answers(0.15)) as proxy:
        client = TracengentClient(options(proxy.url, max_batch_size=30, flush_interval_ms=60_000))
        for event_id in ids:
            client.record(AgentEvent(name="closing", event_id=event_id))
        first = threading.Thread(target=client.close, args=(30,))
        first.start()
        time.sleep(0.05)
        client.close(0.3)  # gives up waiting on its own timeout, long before the delivery ends
        when_second_returned = accounted(client)
        first.join(60)
    assert when_second_returned < 300
    assert client._core.dispatcher.stats.delivered == 300
    assert set(ids) <= set(stored(served))


def test_two_tasks_closing_an_async_client_at_once_both_wait_for_the_delivery(
    served: Served,
) -> None:
    ids = new_ids(300)

    async def main(url: str) -> tuple[AsyncTracengentClient, list[int]]:
        client = AsyncTracengentClient(options(url, max_batch_size=30, flush_interval_ms=60_000))
        for event_id in ids:
            client.record(AgentEvent(name="closing", event_id=event_id))

        async def close() -> int:
            await client.close(30)
            return accounted(client)

        return client, list(await asyncio.gather(close(), close()))

    with PlatformProxy(served.url, rewrite=slow_answers(0.1)) as proxy:
        client, seen = asyncio.run(main(proxy.url))
    assert seen == [300, 300]
    assert client._core.dispatcher.stats.delivered == 300
    assert set(ids) <= set(stored(served))


# --- 3. a multiprocessing child delivers its last events when it exits -------------------------


def _child_records(url: str, ids: list[str]) -> None:
    """Runs in the child: a client of its own, events recorded, no close(), then return (a
    fork or forkserver child then leaves through os._exit, a spawn child through sys.exit)."""
    client = TracengentClient(options(url, flush_interval_ms=60_000))
    for event_id in ids:
        client.record(AgentEvent(name="child", event_id=event_id))


def _records_with(client: TracengentClient, ids: list[str]) -> None:
    for event_id in ids:
        client.record(AgentEvent(name="inherited", event_id=event_id))


def run_child(method: str, target: Callable[..., None], *args: Any) -> None:
    context: Any = multiprocessing.get_context(method)
    process = context.Process(target=target, args=args)
    process.start()
    process.join(60)
    if process.is_alive():
        process.kill()
    assert process.exitcode == 0


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_multiprocessing_child_delivers_its_events_at_exit(served: Served, method: str) -> None:
    ids = new_ids(25, f"evt_{method}")
    run_child(method, _child_records, served.url, ids)
    assert set(ids) <= set(stored(served))


def test_a_client_inherited_across_fork_delivers_the_childs_events_at_exit(
    served: Served,
) -> None:
    parent, child = new_ids(3, "evt_parent"), new_ids(25, "evt_child")
    client = TracengentClient(options(served.url, flush_interval_ms=60_000))
    _records_with(client, parent)
    assert client.flush(10)  # the dispatcher thread runs in the parent when it forks
    run_child("fork", _records_with, client, child)
    client.close(10)
    assert set(parent + child) <= set(stored(served))


# --- 4. the other exit paths -------------------------------------------------------------------


class Fatal(BaseException):
    """Not an Exception: what `except Exception` lets through (SystemExit and friends)."""


class Explosive:
    """Raises a BaseException from the attribute look-up the JSON encoder makes on it."""

    def __getattr__(self, name: str) -> Any:
        raise Fatal(name)


def test_an_event_that_kills_the_encoder_costs_only_itself(served: Served) -> None:
    before, bomb, after = new_ids(3)
    client = TracengentClient(options(served.url))
    client.record(AgentEvent(name="before", event_id=before))
    client.record(AgentEvent(name="bomb", event_id=bomb, attributes=Explosive()))
    assert client.flush(10)
    client.record(AgentEvent(name="after", event_id=after))
    assert client.flush(10), "the dispatcher thread died: later events are never sent"
    client.close(10)
    events = stored(served)
    assert before in events and after in events and bomb not in events
    stats = client._core.dispatcher.stats
    assert stats.delivered == 2 and stats.dropped["unencodable"] == 1
    assert stats.dropped_total == 1


def test_record_never_raises_when_no_thread_can_start_and_close_still_delivers(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread limits, or 3.12's refusal to start threads at interpreter exit: record() must not
    raise, and close() delivers on the caller's thread instead."""
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name == "tracengent-dispatcher":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ids = new_ids(5)
    client = TracengentClient(options(served.url))
    for event_id in ids:
        client.record(AgentEvent(name="threadless", event_id=event_id))
    assert client.flush(0.5) is False  # nothing can deliver in the background
    client.close(10)
    assert set(ids) <= set(stored(served))
    assert client._core.dispatcher.stats.delivered == 5


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 1e300])
def test_a_timeout_that_is_not_a_finite_number_never_raises(served: Served, timeout: float) -> None:
    ids = new_ids(3)
    client = TracengentClient(options(served.url))
    for event_id in ids:
        client.record(AgentEvent(name="timeouts", event_id=event_id))
    client.flush(timeout)
    client.close(timeout)
    client.flush(timeout)
    assert accounted(client) == 3


def test_an_event_recorded_while_close_counts_the_queue_is_still_counted(served: Served) -> None:
    """record() found the client open, then close() ran to the end before its append landed:
    that event must be counted, not left in a queue nobody reads any more.

    The race is a few bytecodes wide, so the recording thread is held exactly there, on the
    dispatcher's `queue.append(item)`, by a trace function, while the other thread closes.
    """
    client = TracengentClient(options(served.url))
    client.record(AgentEvent(name="first"))  # the dispatcher thread is running
    assert client.flush(10)
    append = type(client._core.dispatcher)._append.__code__
    reached, release = threading.Event(), threading.Event()

    def hold(frame: Any, event: str, _arg: Any) -> Any:
        if (
            event == "line"
            and linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            == "queue.append(item)"
        ):
            reached.set()
            release.wait(10)
        return hold

    def calls(frame: Any, _event: str, _arg: Any) -> Any:
        return hold if frame.f_code is append else None

    def record_late() -> None:
        sys.settrace(calls)
        try:
            client.record(AgentEvent(name="late"))
        finally:
            sys.settrace(None)

    recorder = threading.Thread(target=record_late)
    recorder.start()
    assert reached.wait(10)
    client.close(5)
    release.set()
    recorder.join(10)
    assert accounted(client) == 2
    assert client._core.dispatcher.stats.dropped["closed"] == 1


def test_interpreter_exit_mid_request_counts_what_it_could_not_deliver(
    served: Served, tmp_path: Path
) -> None:
    """The platform holds every answer far longer than shutdown_timeout_s: the process still
    exits in bounded time, and every recorded event is counted as delivered or dropped."""
    script = tmp_path / "exits.py"
    script.write_text(
        textwrap.dedent(
            """
            import atexit, sys
            report = []
            atexit.register(lambda: print("ACCOUNTED", *report[0](), flush=True))
            from tracengent import AgentEvent, TracengentClient, TracengentOptions
            client = TracengentClient(TracengentOptions(
                agent_id="demo-agent", base_url=sys.argv[1], ingest_key="agk_demo",
                flush_interval_ms=10, shutdown_timeout_s=1.0, request_timeout_s=30.0))
            stats = client._core.dispatcher.stats
            report.append(lambda: (stats.delivered, stats.dropped_total))
            for i in range(50):
                client.record(AgentEvent(name=f"exit {i}"))
            import time; time.sleep(0.3)  # a request is under way when the interpreter exits
            """
        )
    )
    with PlatformProxy(served.url, rewrite=slow_answers(20)) as proxy:
        result = subprocess.run(
            [sys.executable, str(script), proxy.url], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("ACCOUNTED"))
    delivered, dropped = map(int, line.split()[1:])
    assert delivered + dropped == 50


# --- the invariant, whatever happens -----------------------------------------------------------


@dataclass
class Faults:
    """Answers the proxy gives instead of the platform's, one per request, then the real ones."""

    script: list[str]

    def __call__(self, exchange: Exchange) -> tuple[int, dict[str, str], bytes] | None:
        if not exchange.path.startswith("/v1/ingest") or not self.script:
            return None
        fault = self.script.pop(0)
        if fault == "slow":
            time.sleep(0.2)
            return None
        status = {"refused": 400, "busy": 503, "too_large": 413}[fault]
        return status, {"content-type": "application/json"}, b'{"error":"fault"}'


ITEMS = st.sampled_from(["good", "mistyped", "invalid", "not an event", "bomb", "step", "flush"])


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    scripts=st.lists(st.lists(ITEMS, max_size=60), min_size=1, max_size=3),
    faults=st.lists(st.sampled_from(["slow", "refused", "busy", "too_large"]), max_size=6),
    close_after_s=st.floats(0, 0.1),
    close_timeout_s=st.sampled_from([0.0, 0.05, 0.5, 5.0]),
    max_batch_size=st.integers(1, 20),
)
def test_recorded_is_delivered_plus_dropped_after_close_whatever_happens(
    served: Served,
    scripts: list[list[str]],
    faults: list[str],
    close_after_s: float,
    close_timeout_s: float,
    max_batch_size: int,
) -> None:
    with PlatformProxy(served.url, rewrite=Faults(list(faults))) as proxy:
        client = TracengentClient(options(proxy.url, max_batch_size=max_batch_size, max_retries=1))
        recorded = [0] * len(scripts)

        def run(slot: int, script: list[str]) -> None:
            trace = client.begin_trace("invariant", actor_user_id="u_1")
            for item in script:
                if item == "good":
                    client.record(AgentEvent(name="good"))
                elif item == "mistyped":
                    client.record(AgentEvent(name=7, usage=Usage(3.0), tags=[1]))  # type: ignore[arg-type,list-item]
                elif item == "invalid":
                    client.record(AgentEvent(name="bad", cost=Money(math.nan)))
                elif item == "not an event":
                    client.record("not an event")  # type: ignore[arg-type]
                elif item == "bomb":
                    client.record(AgentEvent(name="bomb", attributes=Explosive()))
                elif item == "step":
                    trace.track_tool_call("tool", lambda: {"n": 10**400})
                else:
                    client.flush(0.05)
                    continue
                recorded[slot] += 1
            trace.close()

        threads = [
            threading.Thread(target=run, args=(slot, script)) for slot, script in enumerate(scripts)
        ]
        for thread in threads:
            thread.start()
        time.sleep(close_after_s)
        client.close(close_timeout_s)
        for thread in threads:
            thread.join(30)
        client.close(5)  # what was recorded after the first close is counted, not queued
    assert accounted(client) == sum(recorded)
