"""The public event model agents emit, plus the per-event helpers the client fills defaults with.

Names, fields and defaults are those of tracengent 0.1 (``tracengent.events``), so user code keeps
working. Unlike 0.1 these classes know nothing about the wire: camelCase shapes come from the
generated models, which keeps one source of truth for field names.

Everything here runs on the caller's thread for every recorded event, so construction does no work
(slotted dataclasses, no validation) and ids/timestamps avoid the slow stdlib paths.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final, Generic, NamedTuple, TypeVar

Number = float | int | Decimal


class EventTypes:
    """Known event types. Plain strings, so a newer platform type can be sent before we know it."""

    ACTION: Final = "action"
    TOOL_CALL: Final = "tool_call"
    LLM_CALL: Final = "llm_call"
    DECISION: Final = "decision"
    ERROR: Final = "error"
    LIFECYCLE: Final = "lifecycle"


class EventStatuses:
    """Known event statuses; plain strings for the same reason as :class:`EventTypes`."""

    SUCCESS: Final = "success"
    FAILURE: Final = "failure"
    PENDING: Final = "pending"


@dataclass(slots=True)
class Money:
    """An amount and its currency.

    The amount is observability data (float-faithful on the wire), not a ledger entry; the platform
    converts currencies itself before comparing against policy limits.
    """

    amount: Number
    currency: str = "USD"

    @classmethod
    def eur(cls, amount: Number) -> Money:
        return cls(amount, "EUR")

    @classmethod
    def usd(cls, amount: Number) -> Money:
        return cls(amount, "USD")


@dataclass(slots=True)
class Usage:
    """Token usage of an LLM call; ``tokens`` reconciles the budget reserved at authorization."""

    tokens: int | None = None
    model: str | None = None


@dataclass(slots=True)
class Actor:
    """The principal an agent acts for, so the platform can attribute the event to a user."""

    user_id: str | None = None


@dataclass(slots=True)
class AgentEvent:
    """An event emitted by an agent.

    Every field is optional at construction: the client fills id, agent, timestamp and tags when
    the event is recorded, so building one stays as cheap as a plain object. ``occurred_at`` takes a
    ``datetime`` (naive means UTC) or an ISO-8601 string that is sent as is.
    """

    name: str = ""
    type: str = EventTypes.ACTION
    status: str = EventStatuses.SUCCESS

    event_id: str | None = None
    idempotency_key: str | None = None
    agent_id: str | None = None
    trace_id: str | None = None
    parent_event_id: str | None = None

    cost: Money | None = None
    usage: Usage | None = None
    actor: Actor | None = None

    input: Any = None
    output: Any = None
    attributes: Any = None

    occurred_at: datetime | str | None = None
    duration_ms: int | None = None
    tags: list[str] | None = None
    root_request: str | None = None


class StepEvent(NamedTuple):
    """A trace step's event: what `AgentEvent` holds, as a tuple, in the encoder's view.

    Every tracked call makes one step, on the caller's thread (`Trace._finish`), so it
    travels as `StepFields`, these fields in this order, with input, output and attributes
    already JSON (see `_encode.encode_step`), viewed as a StepEvent by `step_event()`. It carries
    its own record time, so no `QueuedEvent` wraps it. The fields a step never sets are always
    None; `agent_event()` is the public form, for observers.
    """

    name: str
    type: str
    status: str
    event_id: str
    trace_id: str
    parent_event_id: str | None
    actor: Actor | None
    input: Any
    output: Any
    cost: Money | None
    usage: Usage | None
    attributes: Any
    duration_ms: int
    root_request: str | None
    recorded_ns: int
    idempotency_key: None = None
    agent_id: None = None
    occurred_at: None = None
    tags: None = None

    def agent_event(self) -> AgentEvent:
        return AgentEvent(
            name=self.name,
            type=self.type,
            status=self.status,
            event_id=self.event_id,
            trace_id=self.trace_id,
            parent_event_id=self.parent_event_id,
            actor=self.actor,
            input=self.input,
            output=self.output,
            cost=self.cost,
            usage=self.usage,
            attributes=self.attributes,
            duration_ms=self.duration_ms,
            root_request=self.root_request,
            occurred_at=utc_iso_from_ns(self.recorded_ns),
        )


# What the dispatcher's queue carries. Both are plain tuples, for the caller's sake: building a
# NamedTuple costs ~0.15 µs more on every record() and tracked call, and the garbage collector
# stops tracking a plain tuple of atoms but never a tuple subclass (a backlog of tracked steps
# made every full collection walk them all, ~2-3 µs per tracked call). Their types tell them
# apart: a type checker narrows `QueuedEvent | StepFields` by its length, 2 or 19.

#: An event `record()` queued, with the time it was recorded (ns since the epoch).
QueuedEvent = tuple["AgentEvent", int]
#: A queued trace step: StepEvent's fields, in its order.
StepFields = tuple[
    str, str, str, str, str, "str | None", "Actor | None", Any, Any, "Money | None",
    "Usage | None", Any, int, "str | None", int, None, None, None, None,
]  # fmt: skip

# NamedTuple's own constructor is a Python function (~0.3 µs for a step's 19 fields); tuple's is
# half that (the encoder and observers view each step once).
#: The StepEvent view of a step's fields.
step_event: Callable[[StepFields], StepEvent] = functools.partial(tuple.__new__, StepEvent)

T = TypeVar("T")


@dataclass(slots=True)
class LlmCallResult(Generic[T]):
    """What a ``track_llm_call`` callback returns: the model's result plus the tokens it really used.

    The actual token count lets the platform reconcile the budget it reserved up front.
    """

    value: T
    tokens: int
    model: str | None = None
    cost: Money | None = None


# --- ids -------------------------------------------------------------------------------------------
#
# uuid4() costs several microseconds per call (a getrandom syscall plus UUID object construction).
# An id only has to be unique, not secret, so each process draws 80 random bits once and appends a
# counter: one C-level `next()` and one format per id. A forked child inherits both the seed and
# the counter's position, which would replay the parent's ids, so the child re-seeds itself.

_seed: str
_counter: Iterator[int]
_heads: dict[str, str] = {}  # prefix -> "<prefix>_<seed>", so an id is one format of the counter


def _reseed() -> None:
    global _seed, _counter
    _seed = os.urandom(10).hex()
    _counter = itertools.count()
    _heads.clear()


_reseed()
if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork to guard against
    os.register_at_fork(after_in_child=_reseed)


def new_id(prefix: str) -> str:
    """Return ``<prefix>_`` followed by 32 lowercase hex characters, unique across processes.

    ``"evt"`` and ``"evt_"`` give the same shape (trailing underscores are the separator, and exactly
    one is written), so callers need not know which convention a constant used. The suffix is
    20 hex characters of per-process randomness plus a 12-digit counter: unique within a process
    by construction, across processes with overwhelming probability, and ordered within a process.
    It is predictable, so never use it as a secret.
    """
    head = _heads.get(prefix)
    if head is None:
        head = _heads[prefix] = f"{prefix.rstrip('_')}_{_seed}"
    return f"{head}{next(_counter):012x}"


# --- timestamps ------------------------------------------------------------------------------------
#
# `datetime.now(timezone.utc).isoformat()` builds a datetime and formats every field on each call.
# Events arrive many per second, so the "YYYY-MM-DDTHH:MM:SS." part is cached per second and only
# the microseconds are formatted. The cache is one tuple, replaced whole, so threads never see a
# second paired with another second's text.

_time_ns = time.time_ns
_now_cache: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """The current time as ISO-8601 in UTC with microseconds, e.g. ``2025-01-31T12:00:00.123456+00:00``.

    Always the same width (microseconds even when zero), so the strings also sort by time.
    """
    return utc_iso_from_ns(_time_ns())


def utc_iso_from_ns(ns: int) -> str:
    """`utc_now_iso` for a `time.time_ns()` taken earlier: the caller stamps, the dispatcher formats."""
    global _now_cache
    micros = ns // 1000
    second, fraction = divmod(micros, 1_000_000)
    cached = _now_cache
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
        _now_cache = cached
    return f"{cached[1]}{fraction:06d}+00:00"


def utc_timestamp(dt: datetime | str | None) -> str:
    """Render an event time for the wire, which wants ISO-8601 with a UTC offset.

    A naive datetime is taken to be UTC (what ``datetime.utcnow()`` users mean), an aware one is
    converted to UTC, a string is trusted as already formatted, and ``None`` means now.
    """
    if dt is None:
        return utc_now_iso()
    if isinstance(dt, str):
        return dt
    # Appending the offset is ~3x cheaper than replace(tzinfo=...) or astimezone(), which is
    # why UTC and naive values (nearly all of them) avoid building another datetime.
    offset = None if dt.tzinfo is None else dt.utcoffset()
    if offset is None:
        return dt.isoformat(timespec="microseconds") + "+00:00"
    if not offset:
        return dt.isoformat(timespec="microseconds")
    try:
        return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")
    except OverflowError:  # near datetime.min/max the UTC instant is unrepresentable
        return dt.isoformat(timespec="microseconds")


_FEW_TAGS = 16  # past this many tags, hashing beats scanning a list


def merge_tags(
    environment: str, default_tags: Sequence[str], own: Sequence[str] | None
) -> list[str]:
    """Tags in wire order: environment, then the client's defaults, then the event's own.

    Duplicates keep their first position and empty strings are dropped, so an unset environment
    costs nothing. A bare string where a sequence is expected is one tag, not its characters.
    """
    defaults: Sequence[str] = (default_tags,) if isinstance(default_tags, str) else default_tags
    extra: Sequence[str] = () if own is None else (own,) if isinstance(own, str) else own
    if len(defaults) + len(extra) > _FEW_TAGS:
        merged = dict.fromkeys(itertools.chain((environment,), defaults, extra))
        merged.pop("", None)
        return list(merged)
    # A linear scan of a short list beats hashing into a dict by about 2x at typical sizes.
    tags = [environment] if environment else []
    for tag in defaults:
        if tag and tag not in tags:
            tags.append(tag)
    for tag in extra:
        if tag and tag not in tags:
            tags.append(tag)
    return tags
