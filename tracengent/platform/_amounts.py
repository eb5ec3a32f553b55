"""The amount a decision compares with its limits, and why it may be unreadable.

Missing is not unlimited: a limit (a ``max_amount``, an approval threshold, a grant's
``maxAmount``) that cannot be checked because its amount is missing, not a number, negative or
in a currency without a rate is a deny, never an allow that skips the limit. This module only
reads: it turns what the request carries into a ``Money`` or raises ``Unreadable`` with a reason
that names where the amount was looked for; the decision pipeline says what that means.

For a tool call the amount is in the tool's own data, which is hostile input: the body or
arguments at the binding's ``amount_field``. It must be a JSON number there. A string is not
read as one ("900" may be 900 to one server and an error to another), except in a form body
(``application/x-www-form-urlencoded`` or ``multipart/form-data``), where every value is text
and a plain decimal such as ``"900"`` or ``"12.50"`` (no exponent, ``+``, leading zero or
space; at most 15 significant digits, as the SDK's form reader) is how a number travels. An HTTP call may
also carry the field in its query string, which many servers merge with the body: the query is
read when the body lacks the field, and a call that names it in both is refused, because the
platform cannot tell which of the two the server acts on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._grammar.paths import parse_path
from ._policy import Policy, ToolBinding

__all__ = ["Money", "Unreadable", "binding_context", "context_money", "describe"]

# The decimals every server reads as the same number (as the SDK's form reader): no exponent,
# "+", leading zero or space, and at most 15 significant digits, which a double holds exactly.
_DECIMAL: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_MAX_DIGITS: Final = 15
_FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_CURRENCY_CHARS: Final = 16


class Unreadable(ValueError):
    """An amount or currency the decision cannot use; ``reason`` says which and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Money:
    """An amount in the policy currency, with the words for where it was found."""

    value: float
    where: str


def describe(value: Any) -> str:
    """A value as a reason shows it: short, and typed where the type is the problem."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 24 else value[:21] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return f"a {type(value).__name__}"


def _decimal(text: str) -> bool:
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    return _DECIMAL.fullmatch(text) is not None and len(digits) <= _MAX_DIGITS


def _number(value: Any, where: str, *, form: bool) -> float:
    if isinstance(value, str) and form and _decimal(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unreadable(f"{where} is {describe(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Unreadable(f"{where} is out of range")
    if number < 0:
        raise Unreadable(f"{where} is {describe(value)}: an amount is never negative")
    return number


def context_money(
    policy: Policy, context: Mapping[str, Any], where: str = "context.amount"
) -> Money | None:
    """The context's amount in the policy currency; None when it names none."""
    raw = context.get("amount")
    if raw is None:
        return None
    number = _number(raw, where, form=False)
    currency = context.get("currency")
    if currency is not None and (not isinstance(currency, str) or not currency.strip()):
        raise Unreadable(f"the currency of {where} is {describe(currency)}, not a currency code")
    rate = policy.fx_rate(currency)
    if rate is None:
        raise Unreadable(
            f"unknown currency {currency!r} for {where}: no FX rate to {policy.currency}"
        )
    converted = number * rate
    if not math.isfinite(converted):
        raise Unreadable(f"{where} is out of range in {policy.currency}")
    return Money(converted, where)


def _top_key(field: str) -> str | None:
    segments = parse_path(field)
    if segments is not None and len(segments) == 1 and isinstance(segments[0], str):
        return segments[0]
    return None


def _field(
    field: str, body: Any, query: Mapping[str, str] | None, source: str
) -> tuple[Any, str, bool]:
    """(value, where it was found, whether it was found) for a binding's field path."""
    present, value = _present(body, field)
    key = _top_key(field)
    in_query = query is not None and key is not None and key in query
    if present and in_query:
        raise Unreadable(
            f"both {source} {field} and the query's {key!r} are given: the platform cannot tell"
            " which one the server reads; send it once"
        )
    if in_query and query is not None and key is not None:
        return query[key], f"the query's {key!r}", True
    return value, f"{source} {field}", present


def _present(body: Any, field: str) -> tuple[bool, Any]:
    """(found, value) at ``field``: a null that is there is found, a missing key is not."""
    segments = parse_path(field)
    if segments is None:
        return False, None
    node = body
    for segment in segments:
        in_object = isinstance(node, dict) and isinstance(segment, str) and segment in node
        in_array = isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)
        if not (in_object or in_array):
            return False, None
        node = node[segment]
    return True, node


def binding_context(
    binding: ToolBinding,
    body: Any,
    *,
    query: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """The authorize context a tool call's data gives its binding: amount and currency.

    Raises Unreadable when the binding names an ``amount_field`` and the call does not carry a
    readable amount there, or carries an unreadable currency at ``currency_field``.
    """
    source = "the body's" if binding.transport == "http" else "the arguments'"
    form = (content_type or "").split(";")[0].strip().lower() in _FORM_TYPES
    context: dict[str, Any] = {}
    if binding.amount_field is not None:
        value, where, present = _field(binding.amount_field, body, query, source)
        if not present or value is None:
            raise Unreadable(
                f"{where} is missing"
                + (" (null)" if present else "")
                + f": the binding for {binding.permission} reads its amount there, and an amount"
                " that cannot be checked denies"
            )
        context["amount"] = _number(value, where, form=form or where.startswith("the query"))
    currency = binding.currency
    if binding.currency_field is not None:
        value, where, present = _field(binding.currency_field, body, query, source)
        if present:
            if not isinstance(value, str) or not 0 < len(value.strip()) <= _MAX_CURRENCY_CHARS:
                raise Unreadable(f"{where} is {describe(value)}, not a currency code")
            currency = value
    if currency is not None:
        context["currency"] = currency
    return context
