"""Turn recorded events into ingest bytes a platform accepts, on the dispatcher thread, never raising.

Wire names and their order come from the generated models (`_event_keys`); this module spells no
wire key. Each event is encoded on its own so that one event that cannot be encoded, or is too
large, costs only itself: a batch is then the encoded events joined into a JSON array, byte for
byte what `encode_ingest_events` makes.

A platform refuses a batch whole when one event in it breaks the contract (`"userId": 123`,
`"tokens": 1.5`, an amount of `"NaN"`), and every good event in it would be lost with it. So each
event is made valid before it joins a batch (`_event_validity`); an event nothing valid can be
made of is `Invalid`: the dispatcher drops and counts it alone, and the batch goes on without it.

Input, output and attributes are any JSON, written so that every reader reads it
(`_json_bytes`). A dict with the keys 1 and "1" is one key written twice; seeing that in advance
costs a walk of every value, so it is repaired only when a platform refused a batch (`reread`,
which the dispatcher applies to each event of that batch before sending it again).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tracengent_api import models as wire

from ._event_keys import (
    ACTOR_KEYS,
    CLOSE_KEYS,
    K_ACTOR,
    K_AGENT,
    K_AT,
    K_ATTRIBUTES,
    K_COST,
    K_DURATION,
    K_ID,
    K_IDEMPOTENCY,
    K_INPUT,
    K_NAME,
    K_OUTPUT,
    K_PARENT,
    K_ROOT,
    K_STATUS,
    K_TAGS,
    K_TRACE,
    K_TYPE,
    K_USAGE,
    MONEY_KEYS,
    USAGE_KEYS,
)
from ._event_validity import (
    BadField,
    Invalid,
    is_plain,
    model_problem,
    normalized,
    numbers_problem,
)
from ._events import (
    AgentEvent,
    Money,
    StepEvent,
    StepFields,
    merge_tags,
    new_id,
    step_event,
    utc_iso_from_ns,
    utc_now_iso,
    utc_timestamp,
)
from ._json_bytes import encode_object, json_bytes, reread_json
from ._jsonsafe import to_jsonable

__all__ = [
    "EventDefaults",
    "Invalid",
    "encode_event",
    "encode_object",
    "encode_step",
    "event_object",
    "join_batch",
    "reread",
    "trace_close_object",
]


def _object(keys: tuple[tuple[str, str], ...], values: dict[str, Any]) -> dict[str, Any]:
    """The wire object: wire names, contract order, nulls omitted."""
    return {alias: value for name, alias in keys if (value := values.get(name)) is not None}


def _money(money: Money) -> dict[str, Any]:
    amount = money.amount
    if not isinstance(amount, int | float):  # a Decimal: a JSON number, not pydantic's string
        amount = to_jsonable(amount)  # type: ignore[assignment]
    return _object(MONEY_KEYS, {"amount": amount, "currency": money.currency})


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
            usage := _object(USAGE_KEYS, {"tokens": e.usage.tokens, "model": e.usage.model})
        ):
            d[K_USAGE] = usage
        if e.actor is not None and e.actor.user_id is not None:
            d[K_ACTOR] = _object(ACTOR_KEYS, {"user_id": e.actor.user_id})
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


def encode_event(
    event: AgentEvent, defaults: EventDefaults, recorded_ns: int | None = None
) -> bytes | Invalid | None:
    """The event's bytes; Invalid when nothing valid can be made of it; None when it cannot be
    encoded at all (not an event). Either way it is then dropped and counted alone."""
    try:
        if is_plain(event):
            return encode_object(event_object(event, defaults, recorded_ns))
        obj = event_object(normalized(event), defaults, recorded_ns)
        return model_problem(obj) or encode_object(obj)
    except BadField as bad:
        return bad.invalid
    except Exception:  # noqa: BLE001 - telemetry never raises into the agent
        return None


def reread(encoded: bytes) -> bytes | Invalid:
    """An encoded event as a strict reader reads it, for a batch a platform refused: the same
    bytes when nothing in them could be refused; else bytes with what could be made readable
    (a key written twice once, an out-of-range number as text), or Invalid for an event whose
    fields break the contract."""
    try:
        tree, changed = reread_json(encoded)
    except (ValueError, RecursionError):
        return Invalid("event", "is not JSON that a strict reader reads")
    if type(tree) is not dict:
        return Invalid("event", "is not a JSON object")
    problem = model_problem(tree) or numbers_problem(tree)
    if problem is not None:
        return problem
    return json_bytes(tree) if changed else encoded


# --- trace steps ------------------------------------------------------------------------------
#
# A step's input, output and attributes are encoded on the caller's thread, when the step ends
# (`Trace._finish`), and queued as JSON bytes in a plain tuple. It is a snapshot (the agent
# may mutate a tool's result afterwards, or from another thread, without changing or breaking
# the event), and a plain tuple of strings, numbers and bytes is one the garbage collector stops
# tracking at its first pass: a backlog of steps costs the agent's collections nothing, where
# queued objects made every full collection walk them all (~2-3 µs per tracked call). The
# encoder splices the bytes into the event in place of placeholders only it can write.

_RAW_KEYS = (K_INPUT, K_OUTPUT, K_ATTRIBUTES)
_NONCE = os.urandom(8).hex()
_PLACEHOLDERS = {key: f"@tracengent-raw-{_NONCE}-{key}" for key in _RAW_KEYS}
_QUOTED = {key: b'"%s"' % placeholder.encode() for key, placeholder in _PLACEHOLDERS.items()}


def encode_step(fields: StepFields, defaults: EventDefaults) -> bytes | Invalid | None:
    """The bytes of a queued step: its pre-encoded values (already readable: see encode_object)
    spliced into the event; Invalid or None as for `encode_event`."""
    step = step_event(fields)
    try:
        plain = is_plain(step)
        obj = event_object(step if plain else normalized(step), defaults, step.recorded_ns)
        raw: dict[str, bytes] = {}
        for key in _RAW_KEYS:
            if key in obj:  # in place: the key keeps its position in the contract's order
                raw[key], obj[key] = obj[key], _PLACEHOLDERS[key]
        if not plain and (problem := model_problem(obj)) is not None:
            return problem
        encoded = json_bytes(obj)
        for key, value in raw.items():
            encoded = encoded.replace(_QUOTED[key], value, 1)
        return encoded
    except BadField as bad:
        return bad.invalid
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
        CLOSE_KEYS,
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
