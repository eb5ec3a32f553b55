"""Two-phase LLM token budget (issue 13, part 4), against the embedded and the served platform.

A reservation (`trace.reserve_tokens`, or `track_llm_call(estimated_tokens=...)`) holds budget
while the model runs; the llm_call event names it and the platform reconciles exactly that one
with what was used. The budget left is read from the platform's own Store; the served platform
is `tracengent dev` over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracengent import (
    AsyncTracengentClient,
    LlmCallResult,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
)
from tracengent.platform import Store, render_timeline
from tracengent.testing import PlatformRecorder

from ._served import Served, served_platform

AGENT = "demo-agent"
BUDGET = 50000  # the demo policy's llm_token_budget for demo-agent


@dataclass
class Platform:
    """One platform under test: its client options, its Store and its `tracengent trace`."""

    options: Callable[[], TracengentOptions]
    store: Store
    timeline: Callable[[str], str]

    def committed(self) -> int:
        return self.store.tokens_committed(AGENT)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("budget")) as platform:
        yield platform


def _served_timeline(served: Served) -> Callable[[str], str]:
    def timeline(trace_id: str) -> str:
        shown = served.cli("trace", trace_id)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    return timeline


@pytest.fixture(params=["embedded", "served"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    if request.param == "embedded":
        recorder: PlatformRecorder = request.getfixturevalue("tracengent_platform")
        store = recorder.store
        yield Platform(
            lambda: recorder.options(flush_interval_ms=50),
            store,
            lambda trace_id: render_timeline(store, trace_id),
        )
        return
    served: Served = request.getfixturevalue("served")
    store = served.store()
    try:
        yield Platform(lambda: served.options(), store, _served_timeline(served))
    finally:
        store.close()


def test_a_failed_call_releases_its_reservation(platform: Platform) -> None:
    before = platform.committed()
    with TracengentClient(platform.options()) as client:
        with client.begin_trace("fail") as trace:
            with pytest.raises(TimeoutError), trace.reserve_tokens(4000, model="m") as held:
                assert platform.committed() == before + 4000  # held while the model runs
                held.used(120)  # a stream that got this far, then broke
                raise TimeoutError("the model timed out")
            with pytest.raises(RuntimeError, match="model down"):
                trace.track_llm_call("down", _failing, estimated_tokens=3000)
            assert client.flush(5)
            # released before the trace closes: only what was used counts
            assert platform.committed() == before + 120
    events = [e for e in platform.store.events(trace.trace_id) if e["type"] == "llm_call"]
    assert [(e["status"], e["usage"]["tokens"]) for e in events] == [
        ("failure", 120),
        ("failure", 0),
    ]
    assert "120 tokens of 4000 reserved" in platform.timeline(trace.trace_id)


def _failing() -> LlmCallResult[str]:
    raise RuntimeError("model down")


def test_a_committed_reservation_counts_the_actual_tokens(platform: Platform) -> None:
    before = platform.committed()
    with TracengentClient(platform.options()) as client:
        with client.begin_trace("commit") as trace:
            with trace.reserve_tokens(2000, model="gpt-test", name="answer") as held:
                held.commit(700)
            assert client.flush(5)
            assert platform.committed() == before + 700
    shown = platform.timeline(trace.trace_id)
    assert "✓ answer  700 tokens of 2000 reserved  model gpt-test" in shown


def test_an_uncommitted_reservation_is_released_when_its_trace_closes(
    platform: Platform,
) -> None:
    before = platform.committed()
    with TracengentClient(platform.options()) as client:
        with client.begin_trace("plain result") as trace:
            # a result with no usage: the call's reservation stays open until the trace ends
            trace.track_llm_call("plain", lambda: "text", estimated_tokens=900)  # type: ignore[arg-type, return-value]
            assert client.flush(5)
            assert platform.committed() == before + 900
            assert "900 reserved, open" in platform.timeline(trace.trace_id)
        assert client.flush(5)
    assert platform.committed() == before
    assert "0 tokens of 900 reserved (released)" in platform.timeline(trace.trace_id)


def test_a_refused_reservation_never_runs_the_body(platform: Platform) -> None:
    before = platform.committed()
    ran = []
    with TracengentClient(platform.options()) as client, client.begin_trace("too big") as trace:
        with (
            pytest.raises(NotAuthorizedException, match="token budget"),
            trace.reserve_tokens(BUDGET + 1),
        ):
            ran.append(True)
    assert ran == []
    assert platform.committed() == before


async def test_async_reservations_settle_the_same_way(platform: Platform) -> None:
    before = platform.committed()
    async with AsyncTracengentClient(platform.options()) as client:
        async with client.begin_trace("async") as trace:
            async with trace.reserve_tokens(1500, model="m") as held:
                held.used(40)
                held.used(60)
                held.commit()  # the counted 100
            with pytest.raises(KeyError):
                async with trace.reserve_tokens(800):
                    raise KeyError("cut off")
            ran = []
            with pytest.raises(NotAuthorizedException):
                async with trace.reserve_tokens(BUDGET + 1):
                    ran.append(True)
            assert ran == []
            assert await client.flush(5)
            assert platform.committed() == before + 100
    shown = platform.timeline(trace.trace_id)
    assert "100 tokens of 1500 reserved" in shown and "0 tokens of 800 reserved" in shown


def test_an_event_reconciles_only_the_reservation_it_names(tmp_path: Path) -> None:
    store = Store.in_data_dir(tmp_path)
    try:
        assert store.reserve_tokens("a", 100, "trc_a", "dec_a")
        assert store.reserve_tokens("b", 200, "trc_b", "dec_b")
        # another agent naming a's reservation: its own use, a's reservation untouched
        assert not store.reconcile_tokens("b", "trc_a", 0, "dec_a")
        assert (store.tokens_committed("a"), store.tokens_committed("b")) == (100, 200)
        # a usage of 0 that names no reservation frees none
        assert not store.reconcile_tokens("a", "trc_a", 0)
        assert store.tokens_committed("a") == 100
        assert store.reconcile_tokens("a", "trc_a", 0, "dec_a")  # named: released whole
        assert store.tokens_committed("a") == 0
        assert not store.reconcile_tokens("a", "trc_a", 5, "dec_a")  # settled once only
        assert store.tokens_committed("a") == 5
    finally:
        store.close()


def test_reserve_tokens_refuses_a_count_that_is_not_one(platform: Platform) -> None:
    with TracengentClient(platform.options()) as client, client.begin_trace("bad") as trace:
        with pytest.raises(ValueError, match="token count"), trace.reserve_tokens(10) as held:
            held.used(-1)
