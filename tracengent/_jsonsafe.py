"""Turn arbitrary user payloads into plain JSON without ever raising.

Event ``input``/``output``/``attributes`` are whatever the agent had at hand: models, dataclasses,
bytes, NaNs, cycles. Telemetry must never take the agent down, so every value has a JSON rendering,
possibly a placeholder string such as ``"<unserializable: Foo>"``. The output encodes with both
``json.dumps(..., allow_nan=False)`` and pydantic-core.

Choices, each because the output is telemetry read by people, not data read back by programs:

* NaN/±inf become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers).
* ``Decimal`` becomes an int when integral, else a float: telemetry is not a ledger.
* bytes become their UTF-8 text when they decode, else ``"base64:"`` + standard base64. The type
  stays "string" either way; text that itself starts with ``base64:`` is indistinguishable.
* Strings with lone surrogates (e.g. undecodable file names) get them as ``\\udcxx`` text, because
  neither UTF-8 nor pydantic-core can encode them.
* Ints beyond the interpreter's int-to-str digit limit become ``"<int too large>"``.
* Non-string keys become ``str(key)`` (an Enum key its value's), so ``{1: a, "1": b}`` keeps one.
* Sets become lists, sorted so the same set always renders the same.
* Iterators and generators are never consumed (that would steal the caller's data); they are
  placeholders like any other unknown type. ``__str__``/``__repr__`` are never used for unknowns.
* A container that contains itself renders ``"<circular>"`` where it recurs; containers nested
  more than :data:`MAX_DEPTH` levels deep render ``"<max depth>"``.

Already-plain input (exact str/int/float/bool/None, lists and str-keyed dicts of them) is returned
as the very same object, which makes the common case cheap; treat the result as read-only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import date, time
from decimal import Decimal
from enum import Enum
from typing import Any, TypeAlias, TypeGuard
from uuid import UUID

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

MAX_DEPTH = 64
CIRCULAR = "<circular>"
TOO_DEEP = "<max depth>"
INT_TOO_LARGE = "<int too large>"

_INF = float("inf")
# Below the smallest digit limit CPython lets anyone set (640), so smaller ints always format.
_SAFE_INT = 10**600

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def to_jsonable(value: object) -> JsonValue:
    """Return a plain-JSON rendering of ``value``; never raises (see the module doc for the rules)."""
    try:
        if _is_plain(value, 0):
            return value
    except Exception:  # noqa: BLE001 - e.g. a dict resized by another thread; the slow path copies
        pass
    try:
        return _convert(value, 0, set())
    except Exception:  # noqa: BLE001 - RecursionError when the caller was already deep, ...
        return _placeholder(value)


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON as the wire wants it (non-ASCII kept as is); never raises."""
    try:
        return _dumps(to_jsonable(value)).encode("utf-8")
    except Exception:  # noqa: BLE001 - unreachable by design; telemetry must not raise regardless
        return _dumps(_placeholder(value)).encode("utf-8")


def _is_plain(v: Any, depth: int) -> TypeGuard[JsonValue]:
    """Whether ``v`` already is what :func:`_convert` would produce; no allocation on the way.

    Cycles are not tracked here: they exceed the depth bound and fall through to the slow path.
    """
    t = type(v)
    if t is dict:
        if depth > MAX_DEPTH:
            return False
        for key in v:
            if type(key) is not str or not (key.isascii() or _encodes(key)):
                return False
        return _plain_items(v.values(), depth + 1)
    if t is list:
        return depth <= MAX_DEPTH and _plain_items(v, depth + 1)
    if t is str or t is int or t is float:  # a top-level scalar: one checker for all scalars
        return _plain_items((v,), depth)
    return v is None or t is bool


def _plain_items(items: Iterable[Any], depth: int) -> bool:
    # Scalars are checked inline: a call per leaf would double the cost of the common case.
    for item in items:
        t = type(item)
        if t is str:
            if not (item.isascii() or _encodes(item)):
                return False
        elif t is int:
            if not (-_SAFE_INT < item < _SAFE_INT or _big_int(item) is item):
                return False
        elif t is float:
            if not -_INF < item < _INF:
                return False
        elif not (item is None or t is bool or _is_plain(item, depth)):
            return False
    return True


def _convert(v: Any, depth: int, seen: set[int]) -> JsonValue:
    try:
        t = type(v)
        if t is str:
            return _text(v)
        if t is int:
            return v if -_SAFE_INT < v < _SAFE_INT else _big_int(v)
        if t is float:
            return v if -_INF < v < _INF else _non_finite(v)
        if v is None or t is bool:
            return v  # type: ignore[no-any-return]
        if t is dict or t is list or t is tuple:
            return _enter(v, depth, seen)
        return _convert_other(v, depth, seen)
    except Exception:  # noqa: BLE001 - user code (properties, model_dump, __eq__) may raise anything
        return _placeholder(v)


def _convert_other(v: Any, depth: int, seen: set[int]) -> JsonValue:
    # Enum first: str- and int-mixin members would otherwise match the str/int branches.
    if isinstance(v, Enum):
        return _convert(v.value, depth + 1, seen)
    if isinstance(v, str):
        return _text(str.__str__(v))
    if isinstance(v, int):  # bool cannot be subclassed, so this is e.g. a user int subclass
        return _convert(int.__int__(v), depth, seen)
    if isinstance(v, float):
        return _convert(float.__float__(v), depth, seen)
    if isinstance(v, (date, time)):  # datetime is a date; naive values keep their naive form
        return _convert(v.isoformat(), depth, seen)
    if isinstance(v, Decimal):
        return _decimal(v)
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _bytes(bytes(v))
    if isinstance(v, BaseException):
        return {"type": _type_name(v), "message": _exception_message(v)}
    if isinstance(v, type) or not _is_composite(v):
        return _placeholder(v)
    return _enter(v, depth, seen)


def _is_composite(v: object) -> bool:
    return (
        isinstance(v, (Mapping, Sequence, Set))
        or dataclasses.is_dataclass(v)
        or callable(getattr(v, "model_dump", None))
    )


def _enter(v: Any, depth: int, seen: set[int]) -> JsonValue:
    """Guard against depth and cycles around converting a composite's children."""
    if depth > MAX_DEPTH:
        return TOO_DEEP
    key = id(v)
    if key in seen:
        return CIRCULAR
    seen.add(key)
    try:
        return _children(v, depth + 1, seen)
    finally:
        seen.discard(key)


def _children(v: Any, depth: int, seen: set[int]) -> JsonValue:
    t = type(v)
    if t is list or t is tuple:  # the common cases skip the slower ABC checks below
        return [_convert(item, depth, seen) for item in list(v)]
    if t is dict or isinstance(v, Mapping):
        # list() snapshots a plain dict atomically, so another thread's insert cannot abort us.
        return {
            k if type(k) is str and k.isascii() else _key(k): _convert(item, depth, seen)
            for k, item in list(v.items())
        }
    if isinstance(v, Sequence):  # str and bytes-likes never get here
        return [_convert(item, depth, seen) for item in list(v)]
    if isinstance(v, Set):
        return _sorted([_convert(item, depth, seen) for item in list(v)])
    if dataclasses.is_dataclass(v):
        # Not dataclasses.asdict(): it deep-copies every leaf and recurses without our guards.
        return {f.name: _convert(getattr(v, f.name), depth, seen) for f in dataclasses.fields(v)}
    # A pydantic model, duck-typed: importing pydantic here would cost every user its import time.
    # Its dump is one more level, so a model_dump() that returns another model still terminates.
    return _convert(v.model_dump(mode="json"), depth, seen)


def _key(k: object) -> str:
    try:
        if isinstance(k, Enum):
            k = k.value
        return _text(str.__str__(k) if isinstance(k, str) else str(k))
    except Exception:  # noqa: BLE001 - a user __str__ may raise anything
        return _placeholder(k)


def _text(s: str) -> str:
    if s.isascii() or _encodes(s):
        return s
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodes(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sorted(items: list[JsonValue]) -> list[JsonValue]:
    try:
        return sorted(items)  # type: ignore[type-var]
    except TypeError:  # mixed types: order by type, then JSON text, which is total and stable
        return sorted(items, key=lambda item: (type(item).__name__, _dumps(item)))


def _big_int(v: int) -> JsonValue:
    get_limit = getattr(sys, "get_int_max_str_digits", None)  # 3.10.7+
    limit: int = get_limit() if get_limit is not None else 0
    # bits * log10(2) bounds the digit count from below by less than one digit.
    if limit == 0 or v.bit_length() * 0.30103 < limit - 1:
        return v
    return INT_TOO_LARGE


def _non_finite(v: float) -> str:
    if v != v:
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def _decimal(v: Decimal) -> JsonValue:
    if not v.is_finite():
        return "NaN" if v.is_nan() else ("Infinity" if v > 0 else "-Infinity")
    # int() of 1E+100000 would build a 100k-digit int; beyond that a float (or "Infinity") will do.
    if v.adjusted() < 600 and v == v.to_integral_value():
        return int(v)
    as_float = float(v)
    return as_float if -_INF < as_float < _INF else _non_finite(as_float)


def _bytes(b: bytes) -> str:
    try:
        return b.decode("utf-8")  # the strict decoder also rejects encoded surrogates
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(b).decode("ascii")


def _exception_message(exc: BaseException) -> str:
    try:
        return _text(str(exc))
    except Exception:  # noqa: BLE001 - a user __str__ may raise anything
        return "<unprintable>"


def _type_name(v: object) -> str:
    # Read through `type`'s own descriptor so a metaclass property can neither lie nor raise.
    name = type.__dict__["__name__"].__get__(type(v), type)
    return name if type(name) is str else "object"


def _placeholder(v: object) -> str:
    try:
        return f"<unserializable: {_type_name(v)}>"
    except Exception:  # noqa: BLE001 - the last resort must not fail
        return "<unserializable>"
