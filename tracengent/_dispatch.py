"""The background dispatcher: the queue, its thread, and exact accounting.

`record()` only appends to a bounded deque (full → drop and count; never block, never raise).
One daemon thread per client takes events off the queue up to `max_batch_size` at a time and
hands them to the ingest exporter (`_exporter`: encode, gzip, send, retry, split, re-check), the
split OpenTelemetry makes between its batch processor and its exporter. The dispatcher is the
exporter's `ExportSession`: it tells it close()'s deadline and whether close() gave up, and
counts every event exactly once as delivered or dropped. The async client uses the same
dispatcher: the event loop never does telemetry I/O.

Markers travel through the queue with the events, so ordering is free: a trace's Close op is
sent after the trace's events, and `flush()` waits for exactly what was queued before it.

Every way out ends in the same count, recorded = delivered + dropped:

* `close()` delivers within its timeout and counts the rest. A second close() at the same time
  waits for that same delivery within its own timeout, and the HTTP client is closed once, after
  the delivery (`Connection.hold`).
* An event whose append lands after close() counted the queue counts itself (`_count_late`).
* Events leave the queue one at a time under the lock and are "in flight" until counted, so a
  close() that gives up on a request still in progress counts them exactly once.
* The interpreter's exit closes every open client (atexit), and so does a multiprocessing
  child's, which leaves through `os._exit` after multiprocessing's finalizers (`_hook_exit`).
* A forked child starts with an empty queue and its own connection.
* Nothing the dispatcher thread meets (an encoder calling user code that raises SystemExit, a
  logging filter that fails) ends it; when no thread can start at all, record() still never
  raises and close() delivers on the caller's thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import repeat, starmap
from time import time_ns as _time_ns
from typing import Any

from ._connection import Connection
from ._events import AgentEvent, QueuedEvent, StepFields
from ._exporter import IngestExporter, Outcome
from ._logs import RateLimitedLog
from ._options import TracengentOptions

_JOIN_GRACE_S = 0.05  # requests are timed to end by the deadline; this only covers the wake-up
# Delivery stops this much (at most a tenth of the timeout) before close()'s deadline: counting
# and freeing a backlog of a million events, and the garbage collector's pass over it, take a
# tenth of a second or more of their own, and close() must return within its timeout.
_CLOSE_RESERVE_S = 0.25
# The longest wait threading accepts, halved so that a deadline plus a grace period still fits.
_MAX_WAIT_S = threading.TIMEOUT_MAX / 2
# After a thread failed to start, record() tries again at most this often (a failed start costs
# more than a record).
_THREAD_RETRY_S = 1.0
# multiprocessing runs finalizers by priority, highest first; ours runs after the others, which
# may still record events.
_EXIT_PRIORITY = -100


@dataclass(slots=True)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class _TraceClose:
    wire: dict[str, Any]


# an event with the time it was recorded, a trace step, or a marker
_Item = QueuedEvent | StepFields | _Flush | _TraceClose
_MARKERS = (_Flush, _TraceClose)
_EVENTS = frozenset({tuple})  # the type of queued events (QueuedEvent and StepFields), not markers


class DeliveryStats:
    """Counts of events by fate; every recorded event ends in exactly one of them.

    Drop reasons: ``queue_full`` (recorded while the queue was full), ``closed`` (recorded after
    close()), ``oversize`` (larger than max_event_bytes), ``unencodable`` (not an event, or its
    encoding failed), ``invalid`` (a field nothing valid can be made of, such as a NaN amount or
    1.5 tokens), ``rejected`` (refused by the platform), ``undeliverable`` (retries or close()'s
    timeout ran out), ``disabled`` (the platform refused the agent's credentials).
    """

    REASONS = (
        "queue_full",
        "closed",
        "oversize",
        "unencodable",
        "invalid",
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

    def close_sent(self, delivered: bool, n: int = 1) -> None:
        with self._lock:
            if delivered:
                self.trace_closes_sent += n
            else:
                self.trace_closes_dropped += n

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n

    def deliver(self, n: int) -> None:
        with self._lock:
            self.delivered += n

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class EventDispatcher:
    def __init__(self, options: TracengentOptions, connection: Connection) -> None:
        self._options = options
        self._connection = connection
        self._exporter = IngestExporter(options, connection)
        self._capacity = options.queue_capacity
        self._batch_size = options.max_batch_size
        self._interval = options.flush_interval_ms / 1000.0
        self._start_fresh()
        _LIVE.add(self)

    def _start_fresh(self) -> None:
        self._queue: deque[_Item] = deque()
        self.stats = DeliveryStats()
        self._log = RateLimitedLog()  # new in a forked child: the parent's lock may be held
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_retry_at = 0.0
        self._closed = False
        self._closing_done = threading.Event()
        self._end = 0.0
        self._deadline: float | None = None
        #: close() has counted what was queued and in flight: nothing is sent or counted after
        #: but what is appended late, which counts itself
        self._abandoned = False
        #: events (and trace closes) taken from the queue and not counted yet
        self._in_flight = 0
        self._closes_in_flight = 0

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
            self.warn("queue_full", "queue full (%d events); dropping events", self._capacity)
            return False
        queue.append(item)
        if self._closed:  # close() began since the check above: it may have counted the queue
            self._count_late()
        elif self._thread is None:
            self._start_thread()
        elif len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    #: A trace step, stamped already (the same body: one call less).
    enqueue_step = _append

    def enqueue_trace_close(self, wire: dict[str, Any]) -> None:
        if self._closed:
            self.stats.close_sent(False)
            return
        self._queue.append(_TraceClose(wire))
        if self._closed:
            self._count_late()
        elif self._thread is None:
            self._start_thread()

    def _count_late(self) -> None:
        """Count what was appended after close() counted the queue (it counted all before)."""
        with self._lock:
            if self._abandoned:
                self._drop_queued("closed")

    @property
    def dropped_count(self) -> int:
        return self.stats.dropped_total

    def warn(self, kind: str, message: str, *args: object) -> None:
        with contextlib.suppress(Exception):  # the application's logging failed: telemetry goes on
            self._log.warning(kind, message, *args)

    # --- lifecycle -------------------------------------------------------------------------

    def _start_thread(self, *, now: bool = False) -> bool:
        """Start the dispatcher thread unless it runs; False when none could be started (then
        `record()` tries again at most every `_THREAD_RETRY_S`, unless `now`)."""
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return True
            if self._closed or not (now or time.monotonic() >= self._thread_retry_at):
                return False
            thread = threading.Thread(target=self._run, name="tracengent-dispatcher", daemon=True)
            try:
                thread.start()
            except RuntimeError as error:  # a thread limit, or an interpreter shutting down
                self._thread, self._thread_retry_at = None, time.monotonic() + _THREAD_RETRY_S
                self.warn(
                    "no_thread",
                    "cannot start the dispatcher thread (%s): events wait for close()",
                    error,
                )
                return False
            self._thread = thread
        _hook_exit()
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued before this call was delivered or dropped."""
        timeout = _seconds(timeout)
        if self._closed:
            return self._closing_done.wait(timeout)
        thread = self._thread
        if thread is threading.current_thread():  # user code the encoder runs: it cannot wait
            return False  # for itself
        if thread is None or not thread.is_alive():
            if not self._queue:
                return True
            if not self._start_thread(now=True):
                return False
        marker = _Flush()
        self._queue.append(marker)
        if self._closed:
            self._count_late()
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is queued within `timeout`; count the rest as dropped; send nothing after.

        A concurrent second close() waits for the first one's delivery within its own timeout.
        """
        timeout = _seconds(timeout)
        if self._begin_close(timeout):
            self._finish_close()
        else:
            self._closing_done.wait(timeout)

    def _begin_close(self, timeout: float) -> bool:
        """Stop taking events and start the final delivery; False if a close() began already."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self._end = time.monotonic() + timeout
            self._deadline = self._end - min(_CLOSE_RESERVE_S, timeout / 10)
            self._connection.hold()
        self._interrupt.set()
        self._wake.set()
        return True

    def _finish_close(self) -> None:
        """Wait for the final delivery until the deadline, then count what is left, exactly once."""
        thread = self._thread  # no thread starts once closed
        try:
            if thread is not None and thread.is_alive():
                if thread is not threading.current_thread():
                    thread.join(
                        min(max(0.0, self._end - time.monotonic()) + _JOIN_GRACE_S, _MAX_WAIT_S)
                    )
            elif self._queue:  # no thread could run: deliver here, on the caller's thread
                self._drain()
        finally:
            with self._lock:
                # A thread still alive is in a request that outlived its timeout: what it holds
                # and what is left are counted here, and it sends and counts nothing more.
                self._abandoned = True
                self.stats.drop("undeliverable", self._in_flight)
                self.stats.close_sent(False, self._closes_in_flight)
                self._in_flight = self._closes_in_flight = 0
                self._drop_queued("undeliverable")
            self._connection.release()
            self._closing_done.set()
            _LIVE.discard(self)

    def after_fork_in_child(self) -> None:
        """The child starts empty: the parent's queue is the parent's to deliver."""
        self._start_fresh()

    # --- the dispatcher thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._drain()
            except BaseException as error:  # noqa: BLE001 - nothing may end this thread
                self._lose_in_flight(error)
            if self._closed:
                return

    def _lose_in_flight(self, error: BaseException) -> None:
        """Something unforeseen failed mid-batch: count what it held, and go on."""
        with self._lock:
            if not self._abandoned:
                self.stats.drop("undeliverable", self._in_flight)
                self.stats.close_sent(False, self._closes_in_flight)
                self._in_flight = self._closes_in_flight = 0
        self.warn("internal", "lost a batch to an unexpected %s", type(error).__name__)

    def _drain(self) -> None:
        while self._queue and not self._abandoned:
            if self._past_deadline():
                with self._lock:
                    if not self._abandoned:
                        self._drop_queued("undeliverable")
                return
            batch = self._take_batch()
            if batch:
                self._exporter.export(batch, self)
            self._handle_marker()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _take_events(self) -> list[Any]:
        """Up to a batch of events from the front of the queue (none past a marker), now in
        flight: taken in one C-level pass under the lock, so close() counts each exactly once."""
        with self._lock:
            queue = self._queue
            if self._abandoned or not queue:
                return []
            taken = list(starmap(queue.popleft, repeat((), min(self._batch_size, len(queue)))))
            if not _EVENTS.issuperset(map(type, taken)):  # a marker: it and what follows go back
                first = next(i for i, item in enumerate(taken) if type(item) not in _EVENTS)
                queue.extendleft(reversed(taken[first:]))
                del taken[first:]
            self._in_flight += len(taken)
            return taken

    def _put_back(self, items: list[Any]) -> None:
        """Return events taken but not batched (the batch is full) to the front of the queue."""
        with self._lock:
            if not self._abandoned:  # else close() counted them while in flight
                self._queue.extendleft(reversed(items))
                self._in_flight -= len(items)

    def _take_batch(self) -> list[bytes]:
        taken = self._take_events()
        batch, used = self._exporter.encode(taken, self)
        if used < len(taken):  # the batch is full
            self._put_back(taken[used:])
        return batch

    def _handle_marker(self) -> None:
        with self._lock:
            queue = self._queue
            if self._abandoned or not queue or type(queue[0]) in _EVENTS:
                return
            item = queue.popleft()
            if isinstance(item, _TraceClose):
                self._closes_in_flight += 1
        if isinstance(item, _Flush):
            item.done.set()
        elif isinstance(item, _TraceClose):
            outcome = self._exporter.export_trace_close(item.wire, self)
            with self._lock:
                if not self._abandoned:  # else close() has counted it
                    self._closes_in_flight -= 1
                    self.stats.close_sent(outcome is Outcome.DELIVERED)

    def count(self, delivered: int, reason: str | None, n: int) -> None:
        """Count `n` in-flight events: `delivered` of them delivered, the rest dropped for
        `reason`; nothing when close() has counted them already."""
        with self._lock:
            if self._abandoned:
                return
            self._in_flight -= n
            if delivered:
                self.stats.deliver(delivered)
            if n > delivered and reason is not None:
                self.stats.drop(reason, n - delivered)

    def _drop_queued(self, reason: str) -> None:
        """Count what is queued as dropped for `reason` (caller holds the lock).

        Exactly what is queued when it starts: an append landing meanwhile stays, and counts
        itself (see `_count_late`). Popped in one C-level pass, so a backlog of a million events
        does not stretch close() past its timeout one Python-level popleft() at a time.
        """
        queue = self._queue
        taken = list(starmap(queue.popleft, repeat((), len(queue))))
        kinds = Counter(map(type, taken))  # C-speed; markers are rare, so usually no scan at all
        marked = any(kinds[kind] for kind in _MARKERS)
        markers = [item for item in taken if isinstance(item, _MARKERS)] if marked else []
        for item in markers:
            if isinstance(item, _TraceClose):
                self.stats.close_sent(False)
            elif isinstance(item, _Flush):
                item.done.set()
        self.stats.drop(reason, len(taken) - len(markers))

    # --- the rest of what the exporter sees of the queue (an ExportSession: also count, warn) --

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def sleep(self, seconds: float) -> None:
        if self._interrupt.is_set():
            time.sleep(seconds)  # close() already woke us; the flow bounded this by its deadline
        else:
            self._interrupt.wait(seconds)


def _seconds(timeout: object) -> float:
    """A timeout as threading can wait it: NaN, negative or not a number is 0, None (wait as
    long as it takes) or more than threading can wait is the longest it can."""
    if timeout is None:
        return _MAX_WAIT_S
    try:
        seconds = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not seconds > 0:  # also NaN
        return 0.0
    return min(seconds, _MAX_WAIT_S)


_LIVE: weakref.WeakSet[EventDispatcher] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    """Close every open client at once, each within its `shutdown_timeout_s`: all of them
    deliver side by side, so N clients do not delay the exit N timeouts."""
    dispatchers = list(_LIVE)
    begun = [d for d in dispatchers if d._begin_close(_seconds(d._options.shutdown_timeout_s))]
    for dispatcher in dispatchers:
        if dispatcher in begun:
            dispatcher._finish_close()
        else:  # another thread is closing it: wait for that delivery, as close() would
            dispatcher._closing_done.wait(_seconds(dispatcher._options.shutdown_timeout_s))


def _reset_all_after_fork() -> None:
    for dispatcher in list(_LIVE):
        dispatcher._connection.after_fork()
        dispatcher.after_fork_in_child()


_exit_finalizer: Any = None


def _hook_exit() -> None:
    """Make this process close every open client when it exits through multiprocessing.

    A multiprocessing child (fork or forkserver) leaves through `os._exit`, so atexit never
    runs there; it runs multiprocessing's finalizers first (`util._exit_function`). A forked
    child starts with the parent's finalizers cleared, which is why this is done whenever a
    dispatcher thread starts (the first record() of a process, the child's included), not once
    at import. A spawned child exits normally, through atexit, too.
    """
    global _exit_finalizer
    util = sys.modules.get("multiprocessing.util")  # absent: not a child, nothing to hook
    if util is None:
        return
    finalizer = _exit_finalizer
    if finalizer is None or not finalizer.still_active():
        _exit_finalizer = util.Finalize(None, _close_all_at_exit, exitpriority=_EXIT_PRIORITY)


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
