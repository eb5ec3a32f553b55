"""Making an event valid before it joins a batch: one event that breaks the contract must not
cost the whole batch it would be sent in.

The common, well-typed event is told apart by a few type checks (`is_plain`) and pays nothing
more. Any other is normalized field by field (`normalized`): a text field takes the text of what
it was given (123 → "123"), a count a whole number in range (12.0 → 12, "12" → 12), an amount a
finite number of 0 or more (Decimal("1.50") → 1.5); the encoder then validates the result with
the generated model (`model_problem`). What nothing valid can be made of is `Invalid`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import ValidationError
from tracengent_api import models as wire

from . import _event_keys as keys
from ._events import Actor, AgentEvent, Money, StepEvent, Usage
from ._json_bytes import FLOAT_DIGITS, encode_object
from ._jsonsafe import to_jsonable

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


class BadField(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.invalid = Invalid(field, problem)


_OPTIONAL_TEXT = frozenset({str, type(None)})
_OPTIONAL_TIME = frozenset({str, datetime, type(None)})
_INF = math.inf
_AMOUNT_INT_MAX = 10**308  # ints up to here are finite doubles; larger ones are checked slowly


def is_plain(e: AgentEvent | StepEvent) -> bool:
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


def normalized(e: AgentEvent | StepEvent) -> AgentEvent:
    """`e` with every field of its wire type, or `BadField` naming the first field that cannot be."""
    duration = e.duration_ms
    return AgentEvent(
        name=_text(e.name, keys.K_NAME),
        type=_text(e.type, keys.K_TYPE),
        status=_text(e.status, keys.K_STATUS),
        event_id=_optional_text(e.event_id, keys.K_ID),
        idempotency_key=_optional_text(e.idempotency_key, keys.K_IDEMPOTENCY),
        agent_id=_optional_text(e.agent_id, keys.K_AGENT),
        trace_id=_optional_text(e.trace_id, keys.K_TRACE),
        parent_event_id=_optional_text(e.parent_event_id, keys.K_PARENT),
        cost=None if e.cost is None else _cost(e.cost),
        usage=None if e.usage is None else _usage(e.usage),
        actor=None if e.actor is None else _actor(e.actor),
        input=e.input,
        output=e.output,
        attributes=e.attributes,
        occurred_at=_time(e.occurred_at),
        duration_ms=None if duration is None else _count(duration, keys.K_DURATION, rounded=True),
        tags=_tags(e.tags),
        root_request=_optional_text(e.root_request, keys.K_ROOT),
    )


def _text(value: Any, field: str) -> str:
    """The text of `value`: itself for text (a str subclass or str enum: its str value, whatever
    its __str__ says), else its JSON (123 → "123", True → "true", {"a": 1} → '{"a":1}')."""
    if type(value) is str:
        return value
    if value is None:
        raise BadField(field, "is missing")
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
        raise BadField(field, "is a bool, not a number")
    number: int | float
    if isinstance(value, int):
        number = int.__int__(value)  # an IntEnum or other int subclass: its int value
    elif isinstance(value, float):
        number = float.__float__(value)
    elif isinstance(value, Decimal | str):
        number = _decimal(value, field)
    else:
        raise BadField(field, f"is {_type_name(value)}, not a number")
    if type(number) is float:
        if not math.isfinite(number):
            raise BadField(field, "is not finite (JSON has no NaN or Infinity)")
    else:
        try:
            float(number)
        except OverflowError:
            raise BadField(field, "is too large for a JSON number") from None
    return number


def _decimal(value: Decimal | str, field: str) -> int | float:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str.__str__(value).strip())
    except ArithmeticError:  # decimal.InvalidOperation: not numeric text
        raise BadField(field, "is text that is not a number") from None
    if not number.is_finite():
        raise BadField(field, "is not finite (JSON has no NaN or Infinity)")
    if number.adjusted() >= FLOAT_DIGITS:  # before int(): 1E+100000 would be a huge int
        raise BadField(field, "is too large for a JSON number")
    return int(number) if number == number.to_integral_value() else float(number)


def _count(value: Any, field: str, *, rounded: bool = False) -> int:
    """A whole number from 0 to MAX_COUNT; `rounded` rounds a fraction (a duration is a
    measurement, 12.7 ms is 13), else a fraction cannot be a count (1.5 tokens)."""
    number = _number(value, field)
    if type(number) is float:
        if not (rounded or number.is_integer()):
            raise BadField(field, "is not a whole number")
        number = round(number)
    if not 0 <= number <= MAX_COUNT:
        raise BadField(field, f"is out of range (a count is 0 to {MAX_COUNT})")
    return int(number)


def _amount(value: Any, field: str) -> int | float:
    number = _number(value, field)
    if number < 0:
        raise BadField(field, "is negative (an amount is 0 or more)")
    return number


def _part(value: Any, name: str, wire_names: dict[str, str], field: str) -> Any:
    """A field of a nested object: an attribute (Money, Usage, Actor or a look-alike) or a
    mapping's key, by its Python or its wire name (None when the mapping has neither)."""
    if isinstance(value, Mapping):
        return value[name] if name in value else value.get(wire_names[name])
    part = getattr(value, name, _ABSENT)
    if part is _ABSENT:
        raise BadField(field, f"is missing: {_type_name(value)} has no {name}")
    return part


_ABSENT = object()


def _type_name(value: Any) -> str:
    return f"a value of type {type(value).__name__}"


def _cost(value: Any) -> Money:
    amount = _part(value, "amount", keys.MONEY_NAMES, keys.F_AMOUNT)
    if amount is None:
        raise BadField(keys.F_AMOUNT, "is missing")
    currency = _part(value, "currency", keys.MONEY_NAMES, keys.F_CURRENCY)
    return Money(_amount(amount, keys.F_AMOUNT), _text(currency, keys.F_CURRENCY))


def _usage(value: Any) -> Usage:
    tokens = _part(value, "tokens", keys.USAGE_NAMES, keys.F_TOKENS)
    model = _part(value, "model", keys.USAGE_NAMES, keys.F_MODEL)
    return Usage(
        None if tokens is None else _count(tokens, keys.F_TOKENS),
        _optional_text(model, keys.F_MODEL),
    )


def _actor(value: Any) -> Actor:
    return Actor(
        _optional_text(_part(value, "user_id", keys.ACTOR_NAMES, keys.F_USER), keys.F_USER)
    )


def _time(value: Any) -> datetime | str | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise BadField(keys.K_AT, f"is {_type_name(value)}; send a datetime or ISO-8601 text")


def _tags(own: Any) -> list[str] | None:
    """An event's own tags as text; one tag when it is not a collection of them."""
    if own is None:
        return None
    items = list(own) if isinstance(own, list | tuple | set | frozenset) else [own]
    return [_text(tag, keys.K_TAGS) for tag in items if tag is not None]


def model_problem(obj: dict[str, Any]) -> Invalid | None:
    """What the generated model refuses in a wire object (its JSON types, strictly)."""
    try:
        wire.Event.model_validate(obj, strict=True)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        return Invalid(".".join(map(str, first["loc"])) or "event", first["msg"])
    return None


def numbers_problem(obj: dict[str, Any]) -> Invalid | None:
    """What breaks the number rules in a wire object the model accepted (see MAX_COUNT)."""
    usage, cost = obj.get(keys.K_USAGE), obj.get(keys.K_COST)
    try:
        if (duration := obj.get(keys.K_DURATION)) is not None:
            _count(duration, keys.K_DURATION)
        if (
            isinstance(usage, dict)
            and (tokens := usage.get(keys.USAGE_NAMES["tokens"])) is not None
        ):
            _count(tokens, keys.F_TOKENS)
        if isinstance(cost, dict):
            _amount(cost.get(keys.MONEY_NAMES["amount"]), keys.F_AMOUNT)
    except BadField as bad:
        return bad.invalid
    return None
