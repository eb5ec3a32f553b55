"""What the workloads share: the client's options, the warm-up, waiting for delivery, and one
body for both clients (`Steps`, run by `run_variant`).

Only the standard library at import: a workload process may be another virtualenv's interpreter,
and `tracengent` is imported where it is used, from whichever SDK that process measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

from .._sink import SinkClient

Result = dict[str, Any]
AGENT_ID = "bench-agent"
WARMUP_EVENTS = 200  # fits the quick W4 queue; a part batch, sent within the flush interval
DELIVERY_TIMEOUT_S = 120.0

PERMISSION = "payments:refund"
CONTEXT = {"amount": 10, "currency": "EUR"}
DECISION_BODY = {"permission": PERMISSION, "context": CONTEXT}
JSON_HEADERS = {"Content-Type": "application/json"}


def options(url: str, **overrides: Any) -> Any:
    from tracengent import TracengentOptions

    return TracengentOptions(
        agent_id=AGENT_ID,
        base_url=url,
        client_id="key_demo",
        client_secret="ags_demo",
        **overrides,
    )


def event(name: str, seq: int) -> Any:
    from tracengent import AgentEvent

    return AgentEvent(name=name, attributes={"seq": seq, "user": "u_1"})


def async_client_class() -> Any:
    import tracengent

    return getattr(tracengent, "AsyncTracengentClient", None)


def sdk_delivered(client: Any, warm_up: int) -> int | None:
    """The SDK's own count of delivered events after the warm-up, where it keeps one (0.2)."""
    stats = getattr(getattr(getattr(client, "_core", None), "dispatcher", None), "stats", None)
    delivered = getattr(stats, "delivered", None)
    return delivered - warm_up if isinstance(delivered, int) else None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered)) - 1))
    return ordered[index]


def raw_post(url: str, body: Any, headers: dict[str, str]) -> Any:
    """The leanest hand-written POST: encode the JSON, build an `httpx.Request`, `send` it.

    (`client.post(path, json=...)` goes through `build_request` and URL merging, which on this
    machine costs ~100 µs more than `send` and would hide the SDK's overhead.)
    """
    import httpx

    content = json.dumps(body, separators=(",", ":")).encode()
    return httpx.Request("POST", url + "/echo", content=content, headers=headers)


class LogCounter(logging.Handler):
    """Counts the lines the "tracengent" logger writes at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        if len(self.samples) < 5:
            self.samples.append(record.getMessage()[:200])

    @classmethod
    @contextlib.contextmanager
    def attached(cls) -> Iterator[LogCounter]:
        counter = cls()
        logger = logging.getLogger("tracengent")
        logger.addHandler(counter)
        try:
            yield counter
        finally:
            logger.removeHandler(counter)


def wait_delivered(
    sink: SinkClient, recorded: int, dropped: Callable[[], int], timeout: float
) -> dict[str, Any]:
    """Block until every recorded event was delivered or counted as dropped (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        stats = sink.wait_events(recorded - dropped(), max(0.01, min(1.0, left)))
        if stats["events_unique"] + dropped() >= recorded or left <= 0:
            return stats


def warm_up(record: Callable[[Any], None], sink: SinkClient) -> None:
    """Deliver `WARMUP_EVENTS` first (connection, token, first batch), then reset the sink.

    It blocks, also under the async client: nothing else runs on the loop meanwhile."""
    sink.reset()
    for i in range(WARMUP_EVENTS):
        record(event("bench.warmup", i))
    stats = sink.wait_events(WARMUP_EVENTS, 30.0)
    if stats["events_unique"] < WARMUP_EVENTS:
        raise RuntimeError(f"warm-up: {stats['events_unique']}/{WARMUP_EVENTS} events arrived")
    sink.reset()


# --- one body for both clients ------------------------------------------------------------------

Steps = Generator[Any, Any, Result]
"""A workload's body, written once for the sync and the async client: a generator given the
client class, which yields what a client call returned and is sent back its outcome, so that
``answer = yield client.close(5.0)`` reads the same for both. The sync call has already run and
its value comes straight back; the async call returned an awaitable, which the driver awaits in
the event loop. Only what must be awaited goes through a yield: a timed loop of awaited calls
stays a loop of its own (see `tool_calls`), as a yield per call would be part of the timing."""


def run_variant(variant: str, steps: Callable[[Any], Steps]) -> Result:
    """Run `steps` with `TracengentClient` ("sync") or in an event loop with
    `AsyncTracengentClient` ("async"; skipped where the SDK has none, as 0.1.0)."""
    if variant == "sync":
        from tracengent import TracengentClient

        return _drive(steps(TracengentClient))
    client_class = async_client_class()
    if client_class is None:
        return {"skipped": "this SDK has no AsyncTracengentClient"}
    return asyncio.run(_drive_async(steps(client_class)))


def _advance(steps: Steps, outcome: Any) -> tuple[bool, Any]:
    """Send `outcome` in: (True, the body's result) once it returned, else (False, its yield)."""
    try:
        return False, steps.send(outcome)
    except StopIteration as done:
        return True, done.value


def _drive(steps: Steps) -> Result:
    """The sync client's calls have already run: each yielded value goes straight back."""
    finished, value = _advance(steps, None)
    while not finished:
        finished, value = _advance(steps, value)
    result: Result = value
    return result


async def _drive_async(steps: Steps) -> Result:
    """The async client's calls returned awaitables: each is awaited, in the loop, and its
    outcome goes back."""
    finished, value = _advance(steps, None)
    while not finished:
        finished, value = _advance(steps, await value)
    result: Result = value
    return result
