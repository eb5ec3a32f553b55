"""The ingest exporter: what becomes of a batch once the queue hands it over.

The split OpenTelemetry makes between its batch processor and its exporter: the queue
(`_dispatch`) decides what leaves and when, and counts; this module turns what left into
requests and delivers them. It encodes each event once (made valid, or dropped alone: see
`_encode`), caps a batch by size, gzips once, builds the request with the generated builders,
retries what is transient (backoff, Retry-After, the close() deadline), splits a batch the
platform finds too large, and re-reads event by event a batch the platform refused.

It keeps no state of its own between calls: what it needs from the queue (the close() deadline,
whether close() gave up on this delivery, counting, logging, an interruptible sleep) it gets as
an `ExportSession` with each call. Counting goes through the session as each part of a batch
ends, not once at the end: a close() that gives up half way through a split batch counts only
what was not counted yet.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Literal, Protocol

import httpx
import tracengent_api as api

from ._connection import Connection
from ._encode import (
    EventDefaults,
    Invalid,
    encode_event,
    encode_object,
    encode_step,
    join_batch,
    reread,
)
from ._events import QueuedEvent, StepFields
from ._flow import Flow, Sleep, TokenUnavailable, authed, run_sync
from ._options import TracengentOptions
from ._retry import RetryPolicy

_MAX_BATCH_BYTES = 1 << 20  # a batch stops growing here: requests stay small for any proxy
# Telemetry batches repeat their keys and ids, so level 1 compresses them as well as level 6 does
# (~40:1) at a third of the CPU.
_GZIP_LEVEL = 1

_Builder = Callable[..., httpx.Request]


class Outcome(Enum):
    DELIVERED = "delivered"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    UNDELIVERABLE = "undeliverable"
    DISABLED = "disabled"


_DROP_REASON = {
    Outcome.TOO_LARGE: "oversize",
    Outcome.REJECTED: "rejected",
    Outcome.DISABLED: "disabled",
    Outcome.UNDELIVERABLE: "undeliverable",
}


class ExportSession(Protocol):
    """What the exporter needs from the queue that feeds it (the dispatcher is one)."""

    @property
    def deadline(self) -> float | None:
        """When close() wants delivery over (monotonic seconds), None before close()."""
        ...

    @property
    def abandoned(self) -> bool:
        """close() has counted everything in flight: send nothing more."""
        ...

    def count(self, delivered: int, reason: str | None, n: int) -> None:
        """Count `n` in-flight events: `delivered` of them delivered, the rest dropped."""
        ...

    def warn(self, kind: str, message: str, *args: object) -> None: ...

    def sleep(self, seconds: float) -> None:
        """Wait between retries; close() may cut it short."""
        ...


class IngestExporter:
    """Encodes, sends and retries batches of events and trace closes for one client."""

    def __init__(self, options: TracengentOptions, connection: Connection) -> None:
        self._options = options
        self._connection = connection
        self._defaults = EventDefaults.of(
            options.agent_id, options.environment, options.default_tags
        )
        self._policy = RetryPolicy.from_options(options)

    # --- encoding ------------------------------------------------------------------------------

    def encode(
        self, taken: list[QueuedEvent | StepFields], session: ExportSession
    ) -> tuple[list[bytes], int]:
        """Encode queued events into one batch; also how many of `taken` it used (the rest do
        not fit and go back to the queue). What cannot be sent is counted as dropped here."""
        batch = list[bytes]()
        max_bytes, defaults = self._options.max_event_bytes, self._defaults
        room = max(_MAX_BATCH_BYTES, max_bytes)
        for used, item in enumerate(taken):
            if room <= 0:
                return batch, used
            # Whatever encoding raises, even past `except Exception` (user code raising
            # SystemExit), costs this event alone, never the thread.
            try:
                if len(item) == 2:  # QueuedEvent (a step has 19 fields: StepFields)
                    encoded = encode_event(item[0], defaults, item[1])
                else:
                    encoded = encode_step(item, defaults)
            except BaseException:  # noqa: BLE001 - on the dispatcher thread: nothing may end it
                encoded = None
            if type(encoded) is bytes and len(encoded) <= max_bytes:
                batch.append(encoded)
                room -= len(encoded)
            else:
                _drop_unsendable(encoded, max_bytes, session)
        return batch, len(taken)

    # --- export --------------------------------------------------------------------------------

    def export(self, batch: list[bytes], session: ExportSession, recheck: bool = True) -> None:
        """Deliver a batch of encoded events and count each of them, delivered or dropped."""
        if session.abandoned:  # close() counted these while they were in flight
            return
        outcome = self._deliver(api.build_ingest_events, join_batch(batch), session)
        if outcome is Outcome.TOO_LARGE and len(batch) > 1:
            middle = len(batch) // 2
            self.export(batch[:middle], session, recheck)
            self.export(batch[middle:], session, recheck)
        elif not (
            outcome is Outcome.REJECTED and recheck and self._resend_readable(batch, session)
        ):
            delivered = len(batch) if outcome is Outcome.DELIVERED else 0
            session.count(delivered, _DROP_REASON.get(outcome), len(batch))

    def export_trace_close(self, wire: dict[str, Any], session: ExportSession) -> Outcome:
        """Deliver a trace's Close op; the caller counts it."""
        return self._deliver(api.build_ingest_traces, encode_object(wire), session)

    def _resend_readable(self, batch: list[bytes], session: ExportSession) -> bool:
        """The platform refused the batch: read each event back as strictly as it does (a key
        written twice, a number it cannot hold), drop what is invalid, send the rest once more.
        False when no event in the batch explains the refusal (it then counts as rejected)."""
        checked = [reread(encoded) for encoded in batch]
        if all(after is before for after, before in zip(checked, batch, strict=True)):
            return False
        readable = [after for after in checked if type(after) is bytes]
        for problem in checked:
            if isinstance(problem, Invalid):
                session.count(0, "invalid", 1)
                session.warn("invalid", "dropped an event the platform refused: %s", problem)
        if readable:
            self.export(readable, session, recheck=False)
        return True

    # --- delivery ------------------------------------------------------------------------------

    def _deliver(self, builder: _Builder, body: bytes, session: ExportSession) -> Outcome:
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

        def send(request: httpx.Request) -> httpx.Response:
            if session.abandoned:
                raise _Abandoned
            return self._connection.http.send(request)

        return run_sync(self._delivery_flow(build, session), send, tokens, session.sleep)

    def _delivery_flow(
        self, build: Callable[[str | None], httpx.Request], session: ExportSession
    ) -> Flow[Outcome]:
        uses_token = self._connection.tokens is not None
        attempt = 0
        while True:
            timeout = self._request_timeout(session.deadline)
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
                    session.warn("rejected", "the platform rejected a batch for good: %s", error)
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
            deadline = session.deadline
            delay = (
                self._policy.delay_within(attempt, retry_after, deadline, now)
                if self._policy.should_retry(attempt)
                else None
            )
            if delay is None:
                session.warn("undeliverable", "gave up on a batch: %s", cause)
                return Outcome.UNDELIVERABLE
            session.warn("retrying", "retrying after %.2fs: %s", delay, cause)
            wake_at = now + delay
            while (left := wake_at - time.monotonic()) > 0:
                deadline = session.deadline
                if deadline is not None and wake_at > deadline:
                    return Outcome.UNDELIVERABLE
                yield Sleep(left)

    def _request_timeout(self, deadline: float | None) -> float | None:
        if deadline is None:
            return self._options.request_timeout_s
        left = deadline - time.monotonic()
        return min(self._options.request_timeout_s, left) if left > 0.01 else None


def _drop_unsendable(
    encoded: bytes | Invalid | None, max_bytes: int, session: ExportSession
) -> None:
    if encoded is None:
        session.count(0, "unencodable", 1)
    elif isinstance(encoded, Invalid):
        session.count(0, "invalid", 1)
        session.warn("invalid", "dropped an event that cannot be made valid: %s", encoded)
    else:
        session.count(0, "oversize", 1)
        session.warn(
            "oversize",
            "dropped an event of %d bytes (max_event_bytes=%d)",
            len(encoded),
            max_bytes,
        )


class _Abandoned(Exception):
    """close() gave up on this thread: send nothing more."""
