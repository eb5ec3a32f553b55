"""Turn recorded events into ingest bytes a platform accepts, on the dispatcher thread, never raising.

Wire names and their order come from the generated models (`tracengent_api.models.Event` and
friends), read once at import; this module spells no wire key. Each event is encoded on its own
so that one event that cannot be encoded, or is too large, costs only itself: a batch is then
the encoded events joined into a JSON array, byte for byte what `encode_ingest_events` makes.

A platform refuses a batch whole when one event in it breaks the contract (`"userId": 123`,
`"tokens": 1.5`, an amount of `"NaN"`), and every good event in it would be lost with it. So each
event is made valid before it joins a batch. The common, well-typed event is told apart by a few
type checks (`_plain`) and pays nothing more. Any other is normalized field by field (`_normalized`):
a text field takes the text of what it was given (123 → "123"), a count a whole number in range
(12.0 → 12, "12" → 12), an amount a finite number of 0 or more (Decimal("1.50") → 1.5), and the
result is validated with the generated model. An event nothing valid can be made of is `Invalid`:
the dispatcher drops and counts it alone, and the batch goes on without it.

Input, output and attributes are any JSON, but not every JSON document is read by every reader:
an integer no IEEE double holds (a hostile server's 400-digit number, parsed into a Python int by
a tool) is refused. It shows as a run of 309 digits, which is cheap to look for, and is rewritten
as its digits in a string. A dict with the keys 1 and "1" is one key written twice; seeing that in
advance costs a walk of every value, so it is repaired only when a platform refused a batch
(`reread`, which the dispatcher applies to each event of that batch before sending it again).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json as _to_json
from tracengent_api import models as wire

from ._events import (
    Actor,
    AgentEvent,
    Money,
    StepEvent,
    StepFields,
    Usage,
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


# A finite double has at most 309 integer digits: a longer integer is out of range for every
# reader that reads numbers as doubles (and for the platform), and one of 309 may be.
_FLOAT_DIGITS = 309
_DIGIT_RUN = b"0" * _FLOAT_DIGITS
_DIGITS_AS_ZEROS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))  # digit → "0", else " "
_NOT_DIGITS = bytes(i for i in range(256) if not 48 <= i <= 57)


def encode_object(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a wire object or any value that every JSON reader can read; never
    raises: anything JSON cannot hold is encoded or replaced (NaN and infinities as the strings
    "NaN", "Infinity", "-Infinity"; an integer no double holds as its digits in a string)."""
    try:
        encoded = _to_json(obj, fallback=_fallback, inf_nan_mode="strings")  # _json, inlined
    except Exception:  # noqa: BLE001 - a circular structure, a non-string key, a dict resized
        encoded = _json(to_jsonable(obj))  # by another thread, a failing __getattr__: rebuild
    # Fewer digits than a run needs (nearly always) tells it at once; bytes.translate and a
    # substring search run near memory speed, where a regex scans ten times slower.
    if (
        len(encoded) < _FLOAT_DIGITS
        or len(encoded.translate(None, _NOT_DIGITS)) < _FLOAT_DIGITS
        or _DIGIT_RUN not in encoded.translate(_DIGITS_AS_ZEROS)
    ):
        return encoded
    try:
        tree, changed = _reread(encoded)
    except (ValueError, RecursionError):  # pragma: no cover - our own output always reads back
        return encoded
    return _json(tree) if changed else encoded


def _json(obj: Any) -> bytes:
    return _to_json(obj, fallback=_fallback, inf_nan_mode="strings")


class _Reader:
    """`json.loads` hooks that read as text what a strict reader refuses (an integer or float no
    double holds; NaN and Infinity, which are not JSON), keep one value of a key written twice,
    and note whether they changed anything."""

    def __init__(self) -> None:
        self.changed = False

    def integer(self, text: str) -> int | str:
        if len(text) - text.startswith("-") < _FLOAT_DIGITS:
            return int(text)
        if len(text) - text.startswith("-") == _FLOAT_DIGITS:
            value = int(text)
            try:
                float(value)
                return value
            except OverflowError:
                pass
        self.changed = True
        return text

    def number(self, text: str) -> float | str:
        value = float(text)
        if math.isfinite(value):
            return value
        self.changed = True
        return text

    def constant(self, name: str) -> str:
        self.changed = True
        return name

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # the last value of a key written twice, as most readers keep
        if len(obj) != len(pairs):
            self.changed = True
        return obj


def _reread(encoded: bytes) -> tuple[Any, bool]:
    reader = _Reader()
    tree = json.loads(
        encoded,
        parse_int=reader.integer,
        parse_float=reader.number,
        parse_constant=reader.constant,
        object_pairs_hook=reader.object,
    )
    return tree, reader.changed


# --- validity ---------------------------------------------------------------------------------

MAX_COUNT = 2**53 - 1
"""The largest count (tokens, milliseconds) an event carries: the integers every JSON reader
holds exactly (I-JSON, RFC 7493 §2.2), which is also the platform's bound."""


class Invalid(NamedTuple):
    """Why an event cannot be sent: the wire field and what is wrong with it. Never the value,
    which may hold a secret."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field} {self.problem}"


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.invalid = Invalid(field, problem)


_MONEY_NAMES, _USAGE_NAMES, _ACTOR_NAMES = dict(_MONEY), dict(_USAGE), dict(_ACTOR)
F_AMOUNT = f"{K_COST}.{_MONEY_NAMES['amount']}"
F_CURRENCY = f"{K_COST}.{_MONEY_NAMES['currency']}"
F_TOKENS = f"{K_USAGE}.{_USAGE_NAMES['tokens']}"
F_MODEL = f"{K_USAGE}.{_USAGE_NAMES['model']}"
F_USER = f"{K_ACTOR}.{_ACTOR_NAMES['user_id']}"

_OPTIONAL_TEXT = frozenset({str, type(None)})
_OPTIONAL_TIME = frozenset({str, datetime, type(None)})
_INF = math.inf
_AMOUNT_INT_MAX = 10**308  # ints up to here are finite doubles; larger ones are checked slowly


def _plain(e: AgentEvent | StepEvent) -> bool:
    """The common case, told apart by type checks alone: text fields text, counts whole and in
    range, nested objects of the SDK's own classes holding the same, own tags all text. Such an
    event's wire object is valid by construction (its JSON values aside: see encode_object)."""
    duration = e.duration_ms
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
        and (duration is None or (type(duration) is int and 0 <= duration <= MAX_COUNT))
        and type(e.occurred_at) in _OPTIONAL_TIME
        and (e.tags is None or (type(e.tags) is list and all(type(t) is str for t in e.tags)))
        and (e.cost is None or _plain_money(e.cost))
        and (e.usage is None or _plain_usage(e.usage))
        and (
            e.actor is None or (type(e.actor) is Actor and type(e.actor.user_id) in _OPTIONAL_TEXT)
        )
    )


def _plain_money(money: Money) -> bool:
    if type(money) is not Money:
        return False
    amount = money.amount
    return type(money.currency) is str and (
        (type(amount) is float and 0.0 <= amount < _INF)
        or (type(amount) is int and 0 <= amount <= _AMOUNT_INT_MAX)
    )


def _plain_usage(usage: Usage) -> bool:
    if type(usage) is not Usage:
        return False
    tokens = usage.tokens
    return type(usage.model) in _OPTIONAL_TEXT and (
        tokens is None or (type(tokens) is int and 0 <= tokens <= MAX_COUNT)
    )


def _normalized(e: AgentEvent | StepEvent) -> AgentEvent:
    """`e` with every field of its wire type, or `_Bad` naming the first field that cannot be."""
    duration = e.duration_ms
    return AgentEvent(
        name=_text(e.name, K_NAME),
        type=_text(e.type, K_TYPE),
        status=_text(e.status, K_STATUS),
        event_id=_optional_text(e.event_id, K_ID),
        idempotency_key=_optional_text(e.idempotency_key, K_IDEMPOTENCY),
        agent_id=_optional_text(e.agent_id, K_AGENT),
        trace_id=_optional_text(e.trace_id, K_TRACE),
        parent_event_id=_optional_text(e.parent_event_id, K_PARENT),
        cost=None if e.cost is None else _cost(e.cost),
        usage=None if e.usage is None else _usage(e.usage),
        actor=None if e.actor is None else _actor(e.actor),
        input=e.input,
        output=e.output,
        attributes=e.attributes,
        occurred_at=_time(e.occurred_at),
        duration_ms=None if duration is None else _count(duration, K_DURATION, rounded=True),
        tags=_tags(e.tags),
        root_request=_optional_text(e.root_request, K_ROOT),
    )


def _text(value: Any, field: str) -> str:
    """The text of `value`: itself for text (a str subclass or str enum: its str value, whatever
    its __str__ says), else its JSON (123 → "123", True → "true", {"a": 1} → '{"a":1}')."""
    if type(value) is str:
        return value
    if value is None:
        raise _Bad(field, "is missing")
    if isinstance(value, str):
        return str.__str__(value)
    plain = to_jsonable(value)
    return plain if isinstance(plain, str) else encode_object(plain).decode()


def _optional_text(value: Any, field: str) -> str | None:
    return None if value is None else _text(value, field)


def _number(value: Any, field: str) -> int | float:
    """A JSON number (an int or a finite float) from an int, a float, a Decimal or numeric
    text; a bool is not a number, whatever Python says (True tokens would be sent as 1)."""
    if isinstance(value, bool):
        raise _Bad(field, "is a bool, not a number")
    number: int | float
    if isinstance(value, int):
        number = int.__int__(value)  # an IntEnum or other int subclass: its int value
    elif isinstance(value, float):
        number = float.__float__(value)
    elif isinstance(value, Decimal | str):
        number = _decimal(value, field)
    else:
        raise _Bad(field, f"is {_type_name(value)}, not a number")
    if type(number) is float:
        if not math.isfinite(number):
            raise _Bad(field, "is not finite (JSON has no NaN or Infinity)")
    else:
        try:
            float(number)
        except OverflowError:
            raise _Bad(field, "is too large for a JSON number") from None
    return number


def _decimal(value: Decimal | str, field: str) -> int | float:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str.__str__(value).strip())
    except ArithmeticError:  # decimal.InvalidOperation: not numeric text
        raise _Bad(field, "is text that is not a number") from None
    if not number.is_finite():
        raise _Bad(field, "is not finite (JSON has no NaN or Infinity)")
    if number.adjusted() >= _FLOAT_DIGITS:  # before int(): 1E+100000 would be a huge int
        raise _Bad(field, "is too large for a JSON number")
    return int(number) if number == number.to_integral_value() else float(number)


def _count(value: Any, field: str, *, rounded: bool = False) -> int:
    """A whole number from 0 to MAX_COUNT; `rounded` rounds a fraction (a duration is a
    measurement, 12.7 ms is 13), else a fraction cannot be a count (1.5 tokens)."""
    number = _number(value, field)
    if type(number) is float:
        if not (rounded or number.is_integer()):
            raise _Bad(field, "is not a whole number")
        number = round(number)
    if not 0 <= number <= MAX_COUNT:
        raise _Bad(field, f"is out of range (a count is 0 to {MAX_COUNT})")
    return int(number)


def _amount(value: Any, field: str) -> int | float:
    number = _number(value, field)
    if number < 0:
        raise _Bad(field, "is negative (an amount is 0 or more)")
    return number


def _part(value: Any, name: str, wire_names: dict[str, str], field: str) -> Any:
    """A field of a nested object: an attribute (Money, Usage, Actor or a look-alike) or a
    mapping's key, by its Python or its wire name (None when the mapping has neither)."""
    if isinstance(value, Mapping):
        return value[name] if name in value else value.get(wire_names[name])
    part = getattr(value, name, _ABSENT)
    if part is _ABSENT:
        raise _Bad(field, f"is missing: {_type_name(value)} has no {name}")
    return part


_ABSENT = object()


def _type_name(value: Any) -> str:
    return f"a value of type {type(value).__name__}"


def _cost(value: Any) -> Money:
    amount = _part(value, "amount", _MONEY_NAMES, F_AMOUNT)
    if amount is None:
        raise _Bad(F_AMOUNT, "is missing")
    currency = _part(value, "currency", _MONEY_NAMES, F_CURRENCY)
    return Money(_amount(amount, F_AMOUNT), _text(currency, F_CURRENCY))


def _usage(value: Any) -> Usage:
    tokens = _part(value, "tokens", _USAGE_NAMES, F_TOKENS)
    model = _part(value, "model", _USAGE_NAMES, F_MODEL)
    return Usage(
        None if tokens is None else _count(tokens, F_TOKENS), _optional_text(model, F_MODEL)
    )


def _actor(value: Any) -> Actor:
    return Actor(_optional_text(_part(value, "user_id", _ACTOR_NAMES, F_USER), F_USER))


def _time(value: Any) -> datetime | str | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise _Bad(K_AT, f"is {_type_name(value)}; send a datetime or ISO-8601 text")


def _tags(own: Any) -> list[str] | None:
    """An event's own tags as text; one tag when it is not a collection of them."""
    if own is None:
        return None
    items = list(own) if isinstance(own, list | tuple | set | frozenset) else [own]
    return [_text(tag, K_TAGS) for tag in items if tag is not None]


def _model_problem(obj: dict[str, Any]) -> Invalid | None:
    """What the generated model refuses in a wire object (its JSON types, strictly)."""
    try:
        wire.Event.model_validate(obj, strict=True)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        return Invalid(".".join(map(str, first["loc"])) or "event", first["msg"])
    return None


def _numbers_problem(obj: dict[str, Any]) -> Invalid | None:
    """What breaks the number rules in a wire object the model accepted (see MAX_COUNT)."""
    usage, cost = obj.get(K_USAGE), obj.get(K_COST)
    try:
        if (duration := obj.get(K_DURATION)) is not None:
            _count(duration, K_DURATION)
        if isinstance(usage, dict) and (tokens := usage.get(_USAGE_NAMES["tokens"])) is not None:
            _count(tokens, F_TOKENS)
        if isinstance(cost, dict):
            _amount(cost.get(_MONEY_NAMES["amount"]), F_AMOUNT)
    except _Bad as bad:
        return bad.invalid
    return None


def encode_event(
    event: AgentEvent, defaults: EventDefaults, recorded_ns: int | None = None
) -> bytes | Invalid | None:
    """The event's bytes; Invalid when nothing valid can be made of it; None when it cannot be
    encoded at all (not an event). Either way it is then dropped and counted alone."""
    try:
        if _plain(event):
            return encode_object(event_object(event, defaults, recorded_ns))
        obj = event_object(_normalized(event), defaults, recorded_ns)
        return _model_problem(obj) or encode_object(obj)
    except _Bad as bad:
        return bad.invalid
    except Exception:  # noqa: BLE001 - telemetry never raises into the agent
        return None


def reread(encoded: bytes) -> bytes | Invalid:
    """An encoded event as a strict reader reads it, for a batch a platform refused: the same
    bytes when nothing in them could be refused; else bytes with what could be made readable
    (a key written twice once, an out-of-range number as text), or Invalid for an event whose
    fields break the contract."""
    try:
        tree, changed = _reread(encoded)
    except (ValueError, RecursionError):
        return Invalid("event", "is not JSON that a strict reader reads")
    if type(tree) is not dict:
        return Invalid("event", "is not a JSON object")
    problem = _model_problem(tree) or _numbers_problem(tree)
    if problem is not None:
        return problem
    return _json(tree) if changed else encoded


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


def encode_step(fields: StepFields, defaults: EventDefaults) -> bytes | Invalid | None:
    """The bytes of a queued step: its pre-encoded values (already readable: see encode_object)
    spliced into the event; Invalid or None as for `encode_event`."""
    step = step_event(fields)
    try:
        plain = _plain(step)
        obj = event_object(step if plain else _normalized(step), defaults, step.recorded_ns)
        raw: dict[str, bytes] = {}
        for key in _RAW_KEYS:
            if key in obj:  # in place: the key keeps its position in the contract's order
                raw[key], obj[key] = obj[key], _PLACEHOLDERS[key]
        if not plain and (problem := _model_problem(obj)) is not None:
            return problem
        encoded = _json(obj)
        for key, value in raw.items():
            encoded = encoded.replace(_QUOTED[key], value, 1)
        return encoded
    except _Bad as bad:
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
