"""Turn recorded events into ingest bytes, on the dispatcher thread, never raising.

Wire names and their order come from the generated models (`tracengent_api.models.Event` and
friends), read once at import; this module spells no wire key. Each event is encoded on its own
so that one event that cannot be encoded, or is too large, costs only itself: a batch is then
the encoded events joined into a JSON array, byte for byte what `encode_ingest_events` makes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json as _to_json
from tracengent_api import models as wire

from ._events import (
    AgentEvent,
    Money,
    StepEvent,
    merge_tags,
    new_id,
    step_event,
    utc_iso_from_ns,
    utc_now_iso,
    utc_timestamp,
)
from ._jsonsafe import to_jsonable


def _aliases(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, field.alias or name) for name, field in model.model_fields.items())


_MONEY = _aliases(wire.Money)
_USAGE = _aliases(wire.Usage)
_ACTOR = _aliases(wire.Actor)
_CLOSE = _aliases(wire.TraceClose)

# The hot path builds the event object field by field, in this order; it must be the generated
# model's order (the contract's key order). A regenerated model with other fields fails here, at
# import, rather than sending keys out of order.
_EVENT_FIELDS = (
    "event_id", "idempotency_key", "agent_id", "trace_id", "parent_event_id", "type", "name",
    "status", "cost", "usage", "actor", "input", "output", "attributes", "occurred_at",
    "duration_ms", "tags", "root_request",
)  # fmt: skip
if tuple(wire.Event.model_fields) != _EVENT_FIELDS:  # pragma: no cover - a contract change
    raise ImportError("tracengent_api.models.Event changed: update _EVENT_FIELDS in _encode.py")
(
    K_ID, K_IDEMPOTENCY, K_AGENT, K_TRACE, K_PARENT, K_TYPE, K_NAME, K_STATUS, K_COST, K_USAGE,
    K_ACTOR, K_INPUT, K_OUTPUT, K_ATTRIBUTES, K_AT, K_DURATION, K_TAGS, K_ROOT,
) = (wire.Event.model_fields[name].alias or name for name in _EVENT_FIELDS)  # fmt: skip


def _object(keys: tuple[tuple[str, str], ...], values: dict[str, Any]) -> dict[str, Any]:
    """The wire object: wire names, contract order, nulls omitted."""
    return {alias: value for name, alias in keys if (value := values.get(name)) is not None}


def _money(money: Money) -> dict[str, Any]:
    amount = money.amount
    if not isinstance(amount, int | float):  # a Decimal: a JSON number, not pydantic's string
        amount = to_jsonable(amount)  # type: ignore[assignment]
    return _object(_MONEY, {"amount": amount, "currency": money.currency})


@dataclass(frozen=True, slots=True)
class EventDefaults:
    """What every event of one client carries unless it says otherwise."""

    agent_id: str
    environment: str
    default_tags: tuple[str, ...]
    tags: list[str]  # environment + default tags: what an event without tags of its own carries

    @classmethod
    def of(cls, agent_id: str, environment: str, default_tags: Sequence[str]) -> EventDefaults:
        tags = tuple(default_tags)
        return cls(agent_id, environment, tags, merge_tags(environment, tags, None))


def event_object(
    event: AgentEvent | StepEvent, defaults: EventDefaults, recorded_ns: int | None = None
) -> dict[str, Any]:
    """The wire object of `event`, with the client's defaults filled in (the event is not changed).

    `recorded_ns` is when `record()` was called; it is the event's time unless it has its own.
    Written out field by field: this runs once per event and is the dispatcher's main cost.
    """
    e = event
    d: dict[str, Any] = {K_ID: e.event_id or new_id("evt")}
    if e.idempotency_key is not None:
        d[K_IDEMPOTENCY] = e.idempotency_key
    d[K_AGENT] = e.agent_id or defaults.agent_id
    if e.trace_id is not None:
        d[K_TRACE] = e.trace_id
    if e.parent_event_id is not None:
        d[K_PARENT] = e.parent_event_id
    d[K_TYPE] = e.type
    d[K_NAME] = e.name
    d[K_STATUS] = e.status
    if e.cost is not None or e.usage is not None or e.actor is not None:  # rare: one test for 3
        if e.cost is not None:
            d[K_COST] = _money(e.cost)
        if e.usage is not None and (
            usage := _object(_USAGE, {"tokens": e.usage.tokens, "model": e.usage.model})
        ):
            d[K_USAGE] = usage
        if e.actor is not None and e.actor.user_id is not None:
            d[K_ACTOR] = _object(_ACTOR, {"user_id": e.actor.user_id})
    if (value := e.input) is not None:
        d[K_INPUT] = value
    if (value := e.output) is not None:
        d[K_OUTPUT] = value
    if (value := e.attributes) is not None:
        d[K_ATTRIBUTES] = value
    at = e.occurred_at
    if at is None:
        d[K_AT] = utc_now_iso() if recorded_ns is None else utc_iso_from_ns(recorded_ns)
    else:
        d[K_AT] = utc_timestamp(at)
    if e.duration_ms is not None:
        d[K_DURATION] = e.duration_ms
    d[K_TAGS] = (
        defaults.tags
        if e.tags is None
        else merge_tags(defaults.environment, defaults.default_tags, e.tags)
    )
    if e.root_request is not None:
        d[K_ROOT] = e.root_request
    return d


def _fallback(value: Any) -> Any:
    return to_jsonable(value)


_LONG_NUMBER = re.compile(rb"[0-9]{4300}")
"""Digits past Python's int/str limit: valid JSON that a Python platform refuses to parse."""


def encode_object(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a wire object or any value; never raises: anything JSON cannot
    hold is encoded or replaced."""
    try:
        encoded = _to_json(obj, fallback=_fallback, inf_nan_mode="strings")
        if len(encoded) < 4300 or not _LONG_NUMBER.search(encoded):
            return encoded
    except Exception:  # noqa: BLE001 - a circular structure, a non-string key, a dict resized
        pass  # by another thread, a failing __getattr__: rebuild safely
    return _to_json(to_jsonable(obj), inf_nan_mode="strings")


# --- trace steps ------------------------------------------------------------------------------
#
# A step's input, output and attributes are encoded on the caller's thread, when the step ends
# (`_TraceBase._finish`), and queued as JSON bytes in a plain tuple. It is a snapshot (the agent
# may mutate a tool's result afterwards, or from another thread, without changing or breaking
# the event), and a plain tuple of strings, numbers and bytes is one the garbage collector stops
# tracking at its first pass: a backlog of steps costs the agent's collections nothing, where
# queued objects made every full collection walk them all (~2-3 µs per tracked call). The
# encoder splices the bytes into the event in place of placeholders only it can write.

_RAW_KEYS = (K_INPUT, K_OUTPUT, K_ATTRIBUTES)
_NONCE = os.urandom(8).hex()
_PLACEHOLDERS = {key: f"@tracengent-raw-{_NONCE}-{key}" for key in _RAW_KEYS}
_QUOTED = {key: b'"%s"' % placeholder.encode() for key, placeholder in _PLACEHOLDERS.items()}


def encode_step(queued: tuple[Any, ...], defaults: EventDefaults) -> bytes | None:
    """The bytes of a queued step: its pre-encoded values spliced into the event."""
    step = step_event(queued)
    try:
        obj = event_object(step, defaults, step.recorded_ns)
        raw: dict[str, bytes] = {}
        for key in _RAW_KEYS:
            if key in obj:  # in place: the key keeps its position in the contract's order
                raw[key], obj[key] = obj[key], _PLACEHOLDERS[key]
        fixed = obj if _plain(step) or _well_typed(obj) else _repaired(obj)
        if fixed is None:
            return None
        encoded = encode_object(fixed)
        for key, value in raw.items():
            encoded = encoded.replace(_QUOTED[key], value, 1)
        return encoded
    except Exception:  # noqa: BLE001 - telemetry never raises into the agent
        return None


_TEXT_KEYS = (
    K_ID,
    K_IDEMPOTENCY,
    K_AGENT,
    K_TRACE,
    K_PARENT,
    K_TYPE,
    K_NAME,
    K_STATUS,
    K_AT,
    K_ROOT,
)
_REQUIRED_KEYS = (K_ID, K_AGENT, K_TYPE, K_NAME, K_STATUS, K_AT)


_OPTIONAL_TEXT = frozenset({str, type(None)})
_OPTIONAL_INT = frozenset({int, type(None)})
_OPTIONAL_TIME = frozenset({str, datetime, type(None)})


def _plain(e: AgentEvent | StepEvent) -> bool:
    """The common case, told apart in one expression: text fields text, duration whole, no tags
    of its own. Such an event's wire object is well typed by construction."""
    return (
        type(e.name) is str
        and type(e.type) is str
        and type(e.status) is str
        and type(e.event_id) in _OPTIONAL_TEXT
        and type(e.agent_id) in _OPTIONAL_TEXT
        and type(e.trace_id) in _OPTIONAL_TEXT
        and type(e.parent_event_id) in _OPTIONAL_TEXT
        and type(e.idempotency_key) in _OPTIONAL_TEXT
        and type(e.root_request) in _OPTIONAL_TEXT
        and type(e.duration_ms) in _OPTIONAL_INT
        and type(e.occurred_at) in _OPTIONAL_TIME
        and e.tags is None
    )


def _well_typed(obj: dict[str, Any]) -> bool:
    """Whether the platform will accept the object's typed fields (a cheap check per event)."""
    for key in _TEXT_KEYS:
        value = obj.get(key)
        if value is not None and type(value) is not str:
            return False
    duration = obj.get(K_DURATION)
    return (
        all(obj.get(key) is not None for key in _REQUIRED_KEYS)
        and (duration is None or type(duration) is int)
        and all(type(tag) is str for tag in obj[K_TAGS])
    )


def _repaired(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A mistyped event made acceptable (text as text, a whole number of ms), or None when it
    lacks what an event must have; checked against the generated model, so one bad event never
    makes the platform refuse its whole batch."""
    fixed = dict(obj)
    for key in _TEXT_KEYS:
        value = fixed.get(key)
        if value is not None and type(value) is not str:
            fixed[key] = to_jsonable(value) if isinstance(value, str) else str(to_jsonable(value))
    duration = fixed.get(K_DURATION)
    if duration is not None and type(duration) is not int:
        try:
            fixed[K_DURATION] = round(duration)
        except (TypeError, ValueError, OverflowError):
            del fixed[K_DURATION]
    fixed[K_TAGS] = [tag if type(tag) is str else str(to_jsonable(tag)) for tag in fixed[K_TAGS]]
    try:
        wire.Event.model_validate(fixed)
    except ValueError:
        return None
    return fixed


def encode_event(
    event: AgentEvent, defaults: EventDefaults, recorded_ns: int | None = None
) -> bytes | None:
    """The event's bytes, or None if it cannot be encoded at all (it is then dropped, counted)."""
    try:
        obj: dict[str, Any] | None = event_object(event, defaults, recorded_ns)
        if obj is not None and not _plain(event) and not _well_typed(obj):
            obj = _repaired(obj)
        return None if obj is None else encode_object(obj)
    except Exception:  # noqa: BLE001 - telemetry never raises into the agent
        return None


def join_batch(encoded: Sequence[bytes]) -> bytes:
    """Encoded events as one ingest body: a compact JSON array."""
    return b"[" + b",".join(encoded) + b"]"


def trace_close_object(
    *,
    trace_id: str,
    agent_id: str,
    root_request: str | None,
    failed: bool,
    occurred_at: str,
    summary: str | None,
) -> dict[str, Any]:
    return _object(
        _CLOSE,
        {
            "trace_id": trace_id,
            "agent_id": agent_id,
            "root_request": root_request,
            "op": wire.TraceOp.CLOSE.value,
            "status": (wire.TraceStatus.FAILED if failed else wire.TraceStatus.COMPLETED).value,
            "occurred_at": occurred_at,
            "summary": summary,
        },
    )
