"""JSON bytes every reader reads, from any value: the encoder's one way to write JSON.

pydantic-core writes compact UTF-8 JSON fast; what it cannot hold is replaced rather than raised
(NaN and infinities as strings, anything else through `to_jsonable`). One thing it writes is not
read by every reader: an integer no IEEE double holds (a hostile server's 400-digit number,
parsed into a Python int by a tool). It shows as a run of 309 digits, which is cheap to look
for, and is rewritten as its digits in a string. `reread_json` reads JSON the way a strict
reader would, noting what it had to change (see `_encode.reread`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic_core import to_json as _to_json

from ._jsonsafe import to_jsonable


def _fallback(value: Any) -> Any:
    return to_jsonable(value)


# A finite double has at most 309 integer digits: a longer integer is out of range for every
# reader that reads numbers as doubles (and for the platform), and one of 309 may be.
FLOAT_DIGITS = 309
_DIGIT_RUN = b"0" * FLOAT_DIGITS
_DIGITS_AS_ZEROS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))  # digit → "0", else " "
_NOT_DIGITS = bytes(i for i in range(256) if not 48 <= i <= 57)


def encode_object(obj: Any) -> bytes:
    """Compact UTF-8 JSON of a wire object or any value that every JSON reader can read; never
    raises: anything JSON cannot hold is encoded or replaced (NaN and infinities as the strings
    "NaN", "Infinity", "-Infinity"; an integer no double holds as its digits in a string)."""
    try:
        encoded = _to_json(obj, fallback=_fallback, inf_nan_mode="strings")  # json_bytes, inlined
    except Exception:  # noqa: BLE001 - a circular structure, a non-string key, a dict resized
        encoded = json_bytes(to_jsonable(obj))  # by another thread, a failing __getattr__: rebuild
    # Fewer digits than a run needs (nearly always) tells it at once; bytes.translate and a
    # substring search run near memory speed, where a regex scans ten times slower.
    if (
        len(encoded) < FLOAT_DIGITS
        or len(encoded.translate(None, _NOT_DIGITS)) < FLOAT_DIGITS
        or _DIGIT_RUN not in encoded.translate(_DIGITS_AS_ZEROS)
    ):
        return encoded
    try:
        tree, changed = reread_json(encoded)
    except (ValueError, RecursionError):  # pragma: no cover - our own output always reads back
        return encoded
    return json_bytes(tree) if changed else encoded


def json_bytes(obj: Any) -> bytes:
    return _to_json(obj, fallback=_fallback, inf_nan_mode="strings")


class _Reader:
    """`json.loads` hooks that read as text what a strict reader refuses (an integer or float no
    double holds; NaN and Infinity, which are not JSON), keep one value of a key written twice,
    and note whether they changed anything."""

    def __init__(self) -> None:
        self.changed = False

    def integer(self, text: str) -> int | str:
        if len(text) - text.startswith("-") < FLOAT_DIGITS:
            return int(text)
        if len(text) - text.startswith("-") == FLOAT_DIGITS:
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


def reread_json(encoded: bytes) -> tuple[Any, bool]:
    reader = _Reader()
    tree = json.loads(
        encoded,
        parse_int=reader.integer,
        parse_float=reader.number,
        parse_constant=reader.constant,
        object_pairs_hook=reader.object,
    )
    return tree, reader.changed
