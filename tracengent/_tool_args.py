"""Tool arguments as the platform sees them, and back: what is decided is what the tool gets.

A tool's arguments are asked about as JSON, and redactions apply to that JSON. Arguments that
are not JSON already (a dataclass, a pydantic model, a `MappingProxyType` or any other Mapping,
a datetime) are converted first, and the tool is handed the redacted conversion, rebuilt into the
type it was given where that type can be rebuilt (a pydantic model is validated again, a
dataclass or a datetime goes through pydantic's own round trip). So a field the platform
removed is gone from what the tool receives, and a field a model hides from its dump is hidden
from the tool too. Whatever cannot be shown to the platform as JSON, faithfully, is refused:
the gate does not let through what it cannot read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter

_MAX_DEPTH = 64
_MAX_INT = 10**4000  # beyond this an int cannot even be printed as JSON by default


class UnreadableArguments(ValueError):
    """Arguments that cannot be shown to the platform as JSON; the call is denied."""


def to_json_arguments(value: Any, where: str = "$") -> Any:
    """The JSON value (dicts, lists, strings, finite numbers, booleans, None) of `value`."""
    return _convert(value, where, 0)


def _convert(value: Any, where: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise UnreadableArguments(f"the arguments nest deeper than {_MAX_DEPTH} levels at {where}")
    if value is None or isinstance(value, bool | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, int):
        if isinstance(value, Enum):
            return _convert(value.value, where, depth)
        if abs(value) >= _MAX_INT:
            raise UnreadableArguments(f"the integer at {where} is too large to send")
        return int(value)
    if isinstance(value, float | Decimal):
        if not _finite(value):
            raise UnreadableArguments(
                f"the number at {where} is not finite ({value}); JSON has no NaN or Infinity"
            )
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return float(value)
    if isinstance(value, Enum):
        return _convert(value.value, where, depth)
    if isinstance(value, Mapping):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnreadableArguments(
                    f"the key {key!r} at {where} is not a string (JSON object keys are strings)"
                )
            converted[str(key)] = _convert(item, f"{where}.{key}", depth + 1)
        return converted
    if isinstance(value, list | tuple):
        return [_convert(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    try:  # pydantic models, dataclasses, datetimes, UUIDs, sets: pydantic's JSON form
        plain = pydantic_core.to_jsonable_python(value)
    except Exception as error:  # not convertible: the call is refused, saying why
        raise UnreadableArguments(
            f"the value at {where} ({type(value).__name__}) cannot be shown to the platform as "
            "JSON: pass JSON values, a dataclass or a pydantic model"
        ) from error
    if type(plain) is type(value):
        raise UnreadableArguments(f"the value at {where} ({type(value).__name__}) is not JSON")
    return _convert(plain, where, depth + 1)


def _finite(value: float | Decimal) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, ValueError):  # a signalling Decimal NaN
        return False


def rebuilt(original: Any, redacted: Any) -> Any:
    """`redacted` (the decided JSON of `original`) as the type `original` had, where that type is
    not JSON itself; raises `UnreadableArguments` when the redacted JSON no longer makes one."""
    if original is None or isinstance(original, bool | str | int | float | Enum | Decimal):
        # a scalar: the original itself when the decision left it as it was (an Enum stays one)
        return original if redacted == to_json_arguments(original) else redacted
    if isinstance(original, dict | list) or (
        isinstance(original, Mapping | tuple) and not _is_dataclass(original)
    ):
        return redacted  # a Mapping comes back as a dict, a tuple as a list: the JSON form
    try:
        if isinstance(original, BaseModel):
            return type(original).model_validate(redacted)
        return _adapter(type(original)).validate_python(redacted)
    except Exception as error:  # noqa: BLE001 - the decided arguments must still make the type
        raise UnreadableArguments(
            f"the decided arguments no longer make a {type(original).__name__}: {error}"
        ) from None


def _is_dataclass(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(kind: type[Any]) -> TypeAdapter[Any]:
    """One adapter per type (building one costs far more than using it)."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter
