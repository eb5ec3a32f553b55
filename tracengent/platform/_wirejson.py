"""Reading a request body as the JSON it claims to be, and the numbers the platform acts on.

Every JSON request body is read here before the wire models see it, because the models (and
Python's json module) accept things a decision must not rest on:

* ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 §6), and a number such as
  ``1e400`` or a 400-digit integer has no finite IEEE double: Python reads the one as ``inf`` and
  cannot turn the other into a float at all. Compared with a limit, ``NaN`` is never "above" it
  and an overflow is a crash, so such a number is refused wherever it appears, even deep inside a
  tool body the platform never looks at: another reader of the same bytes may.
* A key given twice: the platform would decide on one value and the receiver may read the other.

Then the numbers the platform itself computes with (amounts, token counts, durations, expiry)
are checked against what they mean: present means a JSON number, an amount is 0 or more, a count
is a whole number from 0 to 2**53 - 1 (the integers every JSON reader holds exactly, RFC 7493
§2.2, and far inside SQLite's 64-bit integers). A negative token estimate would otherwise lift an
agent's budget, and a count past 2**63 cannot be stored.

Every problem names the field as the client wrote it (``context.amount``, ``[3].usage.tokens``,
``body.items[0].price``), so a 400 says what to fix. Nothing here does I/O or knows HTTP.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from ._wire import DURATION_MS, ESTIMATED_TOKENS, EXPIRES_IN_SECONDS, MAX_AMOUNT

__all__ = [
    "ATTENUATE_NUMBERS",
    "AUTHORIZE_NUMBERS",
    "EVENT_NUMBERS",
    "MAX_COUNT",
    "NumberRule",
    "WireError",
    "check_numbers",
    "field_name",
    "read_json",
]

MAX_COUNT: Final = 2**53 - 1
# A finite double has at most 309 integer digits; anything longer is out of range, and checking
# the length first keeps int() away from a 5000-digit string (and Python's int/str digit limit).
_MAX_INT_DIGITS: Final = 309
_MAX_PROBLEMS: Final = 5
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Path: TypeAlias = tuple[str | int, ...]


class WireError(ValueError):
    """A body that cannot be decided on; ``kind`` is the error code of the 400 it becomes."""

    def __init__(self, kind: Literal["malformed_json", "invalid_request"], reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class _Unreadable:
    """Stands in, while parsing, for a number that has no finite value; reported with its path."""

    why: str


class _Duplicated(dict[str, Any]):
    """An object in which ``key`` appeared more than once (the json module keeps the last)."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _constant(name: str) -> _Unreadable:
    return _Unreadable(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float | _Unreadable:
    value = float(text)
    if math.isfinite(value):
        return value
    return _Unreadable(f"{_shown(text)} is out of range (it reads as infinity)")


def _int(text: str) -> int | _Unreadable:
    digits = len(text.lstrip("-"))
    if digits <= _MAX_INT_DIGITS:
        value = int(text)
        try:
            float(value)
        except OverflowError:
            pass
        else:
            return value
    return _Unreadable(f"an integer of {digits} digits is out of range (no finite double holds it)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Duplicated(pairs, key)
        seen.add(key)
    return dict(pairs)


def _shown(text: str) -> str:
    return text if len(text) <= 24 else text[:21] + "..."


def field_name(path: Path) -> str:
    """``context.amount``, ``[0].usage.tokens``, ``body["a b"]``: a path as a person reads it."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(_shown(part), ensure_ascii=False)}]"
    return out or "body"


def _walk(tree: Any) -> Iterator[tuple[Path, Any]]:
    """Every value with its path, in document order; iterative, so depth cannot overflow it."""
    stack: list[tuple[Path, Any]] = [((), tree)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, dict):
            children: list[tuple[str | int, Any]] = list(value.items())
        elif isinstance(value, list):
            children = list(enumerate(value))
        else:
            continue
        stack.extend(((*path, key), item) for key, item in reversed(children))


def read_json(body: bytes) -> Any:
    """The JSON document ``body`` holds (UTF-8, RFC 8259); WireError naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WireError(
            "malformed_json", f"body: not UTF-8 (byte {error.start}); send UTF-8 JSON"
        ) from None
    try:
        tree = json.loads(
            text,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as error:
        raise WireError("malformed_json", f"body: invalid JSON: {error}") from None
    except RecursionError:
        raise WireError("malformed_json", "body: nested too deeply to read") from None
    problems = []
    for path, value in _walk(tree):
        if isinstance(value, _Unreadable):
            problems.append(f"{field_name(path)}: {value.why}; send a finite number")
        elif isinstance(value, _Duplicated):
            problems.append(
                f"{field_name((*path, value.key))}: the key appears more than once; send it once"
            )
        if len(problems) == _MAX_PROBLEMS:
            break
    if problems:
        raise WireError("invalid_request", "; ".join(problems))
    return tree


@dataclass(frozen=True)
class NumberRule:
    """What one wire number must be: ``path`` may hold ``"*"`` for every element of an array."""

    path: tuple[str, ...]
    kind: Literal["amount", "count", "seconds"]


AUTHORIZE_NUMBERS: Final = (
    NumberRule(("context", "amount"), "amount"),
    NumberRule(("context", ESTIMATED_TOKENS), "count"),
)
ATTENUATE_NUMBERS: Final = (
    NumberRule((MAX_AMOUNT,), "amount"),
    NumberRule((EXPIRES_IN_SECONDS,), "seconds"),
)
EVENT_NUMBERS: Final = (
    NumberRule(("*", "usage", "tokens"), "count"),
    NumberRule(("*", DURATION_MS), "count"),
    NumberRule(("*", "cost", "amount"), "amount"),
)


def _values_at(tree: Any, rule: tuple[str, ...], path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if not rule:
        yield path, tree
        return
    head, rest = rule[0], rule[1:]
    if head == "*":
        if isinstance(tree, list):
            for index, item in enumerate(tree):
                yield from _values_at(item, rest, (*path, index))
    elif isinstance(tree, dict) and tree.get(head) is not None:
        yield from _values_at(tree[head], rest, (*path, head))


def _number_problem(value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a JSON number"
    if kind == "amount":
        return f"{value!r} is negative; an amount is 0 or more" if value < 0 else None
    if isinstance(value, float):
        return f"{value!r} is not a whole number"
    lowest = 1 if kind == "seconds" else 0
    if not lowest <= value <= MAX_COUNT:
        return f"{value} is out of range; send a whole number from {lowest} to {MAX_COUNT}"
    return None


def check_numbers(tree: Any, rules: Sequence[NumberRule]) -> None:
    """Raises WireError naming every number in ``tree`` that breaks its rule (absent is fine)."""
    problems = [
        f"{field_name(path)}: {problem}"
        for rule in rules
        for path, value in _values_at(tree, rule.path)
        if (problem := _number_problem(value, rule.kind)) is not None
    ]
    if problems:
        raise WireError("invalid_request", "; ".join(problems[:_MAX_PROBLEMS]))
