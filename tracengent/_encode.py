"""Turn recorded events into ingest bytes, on the dispatcher thread, never raising.

Wire names and their order come from the generated models (`tracengent_api.models.Event` and
friends), read once at import; this module spells no wire key. Each event is encoded on its own
so that one event that cannot be encoded, or is too large, costs only itself: a batch is then
the encoded events joined into a JSON array, byte for byte what `encode_ingest_events` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel
from tracengent_api import models as wire

from ._events import Actor, AgentEvent, Money, Usage, merge_tags, new_id, utc_timestamp
from ._jsonsafe import to_jsonable


def _aliases(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, field.alias or name) for name, field in model.model_fields.items())


_EVENT = _aliases(wire.Event)
_MONEY = _aliases(wire.Money)
_USAGE = _aliases(wire.Usage)
_ACTOR = _aliases(wire.Actor)
_CLOSE = _aliases(wire.TraceClose)


def _object(keys: tuple[tuple[str, str], ...], values: dict[str, Any]) -> dict[str, Any]:
    """The wire object: wire names, contract order, nulls omitted."""
    return {alias: value for name, alias in keys if (value := values.get(name)) is not None}


def _money(money: Money | None) -> dict[str, Any] | None:
    if money is None:
        return None
    amount = money.amount
    if not isinstance(amount, int | float):  # a Decimal: a JSON number, not pydantic's string
        amount = to_jsonable(amount)  # type: ignore[assignment]
    return _object(_MONEY, {"amount": amount, "currency": money.currency})


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return _object(_USAGE, {"tokens": usage.tokens, "model": usage.model}) or None


def _actor(actor: Actor | None) -> dict[str, Any] | None:
    if actor is None:
        return None
    return _object(_ACTOR, {"user_id": actor.user_id}) or None


@dataclass(frozen=True, slots=True)
class EventDefaults:
    """What every event of one client carries unless it says otherwise."""

    agent_id: str
    environment: str
    default_tags: tuple[str, ...]


def event_object(event: AgentEvent, defaults: EventDefaults) -> dict[str, Any]:
    """The wire object of `event`, with the client's defaults filled in (the event is not changed)."""
    return _object(
        _EVENT,
        {
            "event_id": event.event_id or new_id("evt"),
            "idempotency_key": event.idempotency_key,
            "agent_id": event.agent_id or defaults.agent_id,
            "trace_id": event.trace_id,
            "parent_event_id": event.parent_event_id,
            "type": event.type,
            "name": event.name,
            "status": event.status,
            "cost": _money(event.cost),
            "usage": _usage(event.usage),
            "actor": _actor(event.actor),
            "input": event.input,
            "output": event.output,
            "attributes": event.attributes,
            "occurred_at": utc_timestamp(event.occurred_at),
            "duration_ms": event.duration_ms,
            "tags": merge_tags(defaults.environment, defaults.default_tags, event.tags),
            "root_request": event.root_request,
        },
    )


def _fallback(value: Any) -> Any:
    return to_jsonable(value)


def encode_object(obj: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a wire object; anything JSON cannot hold is encoded or replaced."""
    try:
        return pydantic_core.to_json(obj, fallback=_fallback, inf_nan_mode="strings")
    except (ValueError, TypeError, RecursionError, pydantic_core.PydanticSerializationError):
        # a circular structure, a non-string key, a failing __getattr__: rebuild safely
        return pydantic_core.to_json(to_jsonable(obj), inf_nan_mode="strings")


def encode_event(event: AgentEvent, defaults: EventDefaults) -> bytes | None:
    """The event's bytes, or None if it cannot be encoded at all (it is then dropped, counted)."""
    try:
        return encode_object(event_object(event, defaults))
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
