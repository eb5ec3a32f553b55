"""The background dispatcher: queue, batches, delivery and exact accounting.

`record()` only appends to a bounded deque (full → drop and count; never block, never raise).
One daemon thread per client does the rest: encode each event once, batch up to
`max_batch_size`, gzip once, send, retry what is transient, split what is too large, and count
every event exactly once as delivered or dropped. The async client uses the same dispatcher:
the event loop never does telemetry I/O.

Markers travel through the queue with the events, so ordering is free: a trace's Close op is
sent after the trace's events, and `flush()` waits for exactly what was queued before it.
"""

from __future__ import annotations

import atexit
import gzip
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from time import time_ns as _time_ns
from typing import Any, Literal

import httpx
import tracengent_api as api

from ._auth import AgentTokenProvider
from ._encode import EventDefaults, encode_event, encode_object, encode_step, join_batch
from ._events import AgentEvent
from ._flow import Flow, Sleep, TokenUnavailable, authed, run_sync
from ._logs import RateLimitedLog
from ._options import TracengentOptions
from ._retry import RetryPolicy

_JOIN_GRACE_S = 0.05  # requests are timed to end by the deadline; this only covers the wake-up
# Delivery stops this much (at most a tenth of the timeout) before close()'s deadline: counting
# and freeing a backlog of a million events, and the garbage collector's pass over it, take a
# tenth of a second or more of their own, and close() must return within its timeout.
_CLOSE_RESERVE_S = 0.25
_MAX_BATCH_BYTES = 1 << 20  # a batch stops growing here: requests stay small for any proxy
# Telemetry batches repeat their keys and ids, so level 1 compresses them as well as level 6 does
# (~40:1) at a third of the CPU.
_GZIP_LEVEL = 1


class Outcome(Enum):
    DELIVERED = "delivered"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    UNDELIVERABLE = "undeliverable"
    DISABLED = "disabled"


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class _TraceClose:
    wire: dict[str, Any]


# an event with the time it was recorded, a queued trace step (see StepEvent), or a marker
_Item = tuple[AgentEvent, int] | tuple[Any, ...] | _Flush | _TraceClose
_MARKERS = (_Flush, _TraceClose)
_Builder = Callable[..., httpx.Request]
_DROP_REASON = {
    Outcome.TOO_LARGE: "oversize",
    Outcome.REJECTED: "rejected",
    Outcome.DISABLED: "disabled",
    Outcome.UNDELIVERABLE: "undeliverable",
}


class DeliveryStats:
    """Counts of events by fate; every recorded event ends in exactly one of them."""

    REASONS = (
        "queue_full",
        "closed",
        "oversize",
        "unencodable",
        "rejected",
        "undeliverable",
        "disabled",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.dropped: dict[str, int] = dict.fromkeys(self.REASONS, 0)
        self.trace_closes_sent = 0
        self.trace_closes_dropped = 0

    def close_sent(self, delivered: bool) -> None:
        with self._lock:
            if delivered:
                self.trace_closes_sent += 1
            else:
                self.trace_closes_dropped += 1

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n

    def deliver(self, n: int) -> None:
        with self._lock:
            self.delivered += n

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Connection:
    """The sync HTTP client and token provider shared by the dispatcher and the sync client."""

    def __init__(self, options: TracengentOptions, transport: httpx.BaseTransport | None) -> None:
        self.options = options
        self.transport = transport
        self.http = self._new_http()
        self.tokens = (
            AgentTokenProvider(options, self.http) if options.uses_client_credentials else None
        )

    def _new_http(self) -> httpx.Client:
        return httpx.Client(transport=self.transport, timeout=self.options.request_timeout_s)

    def after_fork(self) -> None:
        """The parent's sockets and locks are not ours to use: start over, keeping the token."""
        self.http = self._new_http()
        if self.tokens is not None:
            old = self.tokens
            self.tokens = AgentTokenProvider(self.options, self.http)
            self.tokens._state = old._state  # a valid token stays valid in the child

    def close(self) -> None:
        self.http.close()


class EventDispatcher:
    def __init__(self, options: TracengentOptions, connection: Connection) -> None:
        self._options = options
        self._connection = connection
        self._defaults = EventDefaults.of(
            options.agent_id, options.environment, options.default_tags
        )
        self._policy = RetryPolicy.from_options(options)
        self._capacity = options.queue_capacity
        self._batch_size = options.max_batch_size
        self._interval = options.flush_interval_ms / 1000.0
        self._log = RateLimitedLog()
        self._start_fresh()
        _LIVE.add(self)

    def _start_fresh(self) -> None:
        self._queue: deque[_Item] = deque()
        self.stats = DeliveryStats()
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._deadline: float | None = None
        self._abandoned = False
        self._in_flight = 0

    # --- caller side: never blocks, never raises ---------------------------------------------

    def enqueue(self, event: AgentEvent) -> bool:
        """The whole of `record()` on the caller: stamp the time and append. Defaults, ids and
        encoding happen on the dispatcher thread."""
        return self._append((event, _time_ns()))

    def _append(self, item: _Item) -> bool:
        if self._closed:
            self.stats.drop("closed")
            return False
        queue = self._queue
        if len(queue) >= self._capacity:
            self.stats.drop("queue_full")
            self._log.warning(
                "queue_full", "queue full (%d events); dropping events", self._capacity
            )
            return False
        queue.append(item)
        if self._thread is None:
            self._start_thread()
        elif len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    #: A queued trace step (see StepEvent), stamped already (the same body: one call less).
    enqueue_step = _append

    def enqueue_trace_close(self, wire: dict[str, Any]) -> None:
        if self._closed:
            self.stats.close_sent(False)
            return
        self._queue.append(_TraceClose(wire))
        if self._thread is None:
            self._start_thread()

    @property
    def dropped_count(self) -> int:
        return self.stats.dropped_total

    # --- lifecycle -------------------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="tracengent-dispatcher", daemon=True)
            thread.start()
            self._thread = thread

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued before this call was delivered or dropped."""
        if self._closed or self._thread is None:
            return not self._queue
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is queued within `timeout`; count the rest as dropped; send nothing after."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timeout = max(0.0, timeout)
            end = time.monotonic() + timeout
            self._deadline = end - min(_CLOSE_RESERVE_S, timeout / 10)
            thread = self._thread
        self._interrupt.set()
        self._wake.set()
        if thread is not None:
            thread.join(max(0.0, end - time.monotonic()) + _JOIN_GRACE_S)
        with self._lock:
            if thread is not None and thread.is_alive():
                # a request outlived its timeout: its events and the rest are ours to count now
                self._abandoned = True
                self.stats.drop("undeliverable", self._in_flight)
                self._in_flight = 0
            self._drop_queued()
        _LIVE.discard(self)

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent's queue is the parent's to deliver."""
        self._start_fresh()

    # --- the dispatcher thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
            if self._closed:
                return

    def _drain(self) -> None:
        while self._queue and not self._abandoned:
            if self._past_deadline():
                with self._lock:
                    self._drop_queued()
                return
            batch = self._take_batch()
            if batch:
                self._send_events(batch)
            self._handle_marker()

    def _take_batch(self) -> list[bytes]:
        queue, batch = self._queue, list[bytes]()
        max_bytes, defaults = self._options.max_event_bytes, self._defaults
        room = max(_MAX_BATCH_BYTES, max_bytes)
        while queue and len(batch) < self._batch_size and room > 0:
            item = queue[0]
            if type(item) is not tuple:
                break  # a marker
            queue.popleft()
            if len(item) == 2:  # (event, time)
                encoded = encode_event(item[0], defaults, item[1])
            else:
                encoded = encode_step(item, defaults)
            if encoded is None:
                self.stats.drop("unencodable")
            elif len(encoded) > max_bytes:
                self.stats.drop("oversize")
                self._log.warning(
                    "oversize",
                    "dropped an event of %d bytes (max_event_bytes=%d)",
                    len(encoded),
                    max_bytes,
                )
            else:
                batch.append(encoded)
                room -= len(encoded)
        return batch

    def _handle_marker(self) -> None:
        queue = self._queue
        if not queue or not isinstance(queue[0], _MARKERS):
            return
        item = queue.popleft()
        if isinstance(item, _Flush):
            item.done.set()
        elif isinstance(item, _TraceClose):
            outcome = self._deliver(api.build_ingest_traces, encode_object(item.wire))
            self.stats.close_sent(outcome is Outcome.DELIVERED)

    def _send_events(self, batch: list[bytes]) -> None:
        with self._lock:
            if self._abandoned:  # popped after close() counted the queue: ours to count
                self.stats.drop("undeliverable", len(batch))
                return
            self._in_flight = len(batch)
        outcome = self._deliver(api.build_ingest_events, join_batch(batch))
        if outcome is Outcome.TOO_LARGE and len(batch) > 1:
            with self._lock:
                self._in_flight = 0
            middle = len(batch) // 2
            self._send_events(batch[:middle])
            self._send_events(batch[middle:])
            return
        with self._lock:
            if self._abandoned:  # close() has counted these already
                return
            self._in_flight = 0
            if outcome is Outcome.DELIVERED:
                self.stats.deliver(len(batch))
            else:
                self.stats.drop(_DROP_REASON[outcome], len(batch))

    def _drop_queued(self) -> None:
        """Count what is still queued as dropped (caller holds the lock).

        One pass and a clear: a backlog of a million events must not stretch close() past its
        timeout one popleft() at a time.
        """
        queue = self._queue
        kinds = Counter(map(type, queue))  # C-speed; markers are rare, so usually no scan at all
        marked = any(kinds[kind] for kind in _MARKERS)
        markers = [item for item in queue if isinstance(item, _MARKERS)] if marked else []
        events = len(queue) - len(markers)
        queue.clear()
        for item in markers:
            if isinstance(item, _TraceClose):
                self.stats.close_sent(False)
            elif isinstance(item, _Flush):
                item.done.set()
        self.stats.drop("undeliverable", events)

    # --- delivery ----------------------------------------------------------------------------

    def _deliver(self, builder: _Builder, body: bytes) -> Outcome:
        tokens = self._connection.tokens
        if tokens is not None and tokens.disabled:
            return Outcome.DISABLED
        encoding: Literal["gzip"] | None = None
        if len(body) >= self._options.gzip_threshold_bytes:
            body, encoding = gzip.compress(body, compresslevel=_GZIP_LEVEL), "gzip"
        options = self._options

        def build(token: str | None) -> httpx.Request:
            return builder(
                body,
                base_url=options.base_url,
                bearer_token=token,
                ingest_key=None if token else options.ingest_key,
                content_encoding=encoding,
            )

        return run_sync(self._delivery_flow(build), self._send, tokens, self._sleep)

    def _delivery_flow(self, build: Callable[[str | None], httpx.Request]) -> Flow[Outcome]:
        uses_token = self._connection.tokens is not None
        attempt = 0
        while True:
            timeout = self._request_timeout()
            if timeout is None:
                return Outcome.UNDELIVERABLE
            retry_after: float | None = None
            try:
                response = yield from authed(build, timeout, uses_token)
                api.parse_ingest_events(response)
                return Outcome.DELIVERED
            except api.PayloadTooLargeError:
                return Outcome.TOO_LARGE
            except api.ApiError as error:
                if not error.retryable:
                    self._log.warning(
                        "rejected", "the platform rejected a batch for good: %s", error
                    )
                    return Outcome.REJECTED
                retry_after, cause = error.retry_after, str(error)
            except TokenUnavailable as error:
                tokens = self._connection.tokens
                if tokens is not None and tokens.disabled:
                    return Outcome.DISABLED
                cause = str(error)
            except _Abandoned:
                return Outcome.UNDELIVERABLE
            except Exception as error:  # noqa: BLE001 - transport errors are retryable
                cause = f"{type(error).__name__}: {error}"
            attempt += 1
            now = time.monotonic()
            delay = (
                self._policy.delay_within(attempt, retry_after, self._deadline, now)
                if self._policy.should_retry(attempt)
                else None
            )
            if delay is None:
                self._log.warning("undeliverable", "gave up on a batch: %s", cause)
                return Outcome.UNDELIVERABLE
            self._log.warning("retrying", "retrying after %.2fs: %s", delay, cause)
            wake_at = now + delay
            while (left := wake_at - time.monotonic()) > 0:
                if self._deadline is not None and wake_at > self._deadline:
                    return Outcome.UNDELIVERABLE
                yield Sleep(left)

    def _request_timeout(self) -> float | None:
        if self._deadline is None:
            return self._options.request_timeout_s
        left = self._deadline - time.monotonic()
        return min(self._options.request_timeout_s, left) if left > 0.01 else None

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _send(self, request: httpx.Request) -> httpx.Response:
        if self._abandoned:
            raise _Abandoned
        return self._connection.http.send(request)

    def _sleep(self, seconds: float) -> None:
        if self._interrupt.is_set():
            time.sleep(seconds)  # close() already woke us; the flow bounded this by its deadline
        else:
            self._interrupt.wait(seconds)


class _Abandoned(Exception):
    """close() gave up on this thread: send nothing more."""


_LIVE: weakref.WeakSet[EventDispatcher] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for dispatcher in list(_LIVE):
        dispatcher.close(dispatcher._options.shutdown_timeout_s)


def _reset_all_after_fork() -> None:
    for dispatcher in list(_LIVE):
        dispatcher._connection.after_fork()
        dispatcher.after_fork_in_child()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
