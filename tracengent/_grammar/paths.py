"""The field path grammar shared by redaction (SDK) and amount/currency bindings (platform).

``$.a.b[0].c``; the ``$`` and the first dot are optional (``$card`` = ``card`` = ``$.card``);
``*`` / ``[*]`` select every member of an object or array; ``['a.b']`` / ``["x"]`` name keys
holding dots, brackets, a leading ``$`` or nothing at all (``\\``, ``\\'`` and ``\\"`` are the
only escapes). A malformed path is None: it selects nothing. One parser, so a path the policy
accepts is the path the SDK redacts. A leaf: it imports nothing of tracengent.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Final

__all__ = ["ANY", "Segment", "Wildcard", "parse_path"]


class Wildcard(Enum):
    ANY = "*"


ANY: Final = Wildcard.ANY
Segment = str | int | Wildcard
"""One step of a path: an object key, an array index, or every member."""

_INDEX = re.compile(r"[0-9]+")
_MAX_INDEX_DIGITS = 18  # beyond any real array, and keeps int() clear of its digit limit
_ESCAPABLE: Final = frozenset("\\'\"")


def parse_path(path: object) -> tuple[Segment, ...] | None:
    """Segments of ``path``, or None when it is not a path: a bad path selects nothing."""
    if not isinstance(path, str):
        return None
    text = path.strip()
    text = text.removeprefix("$")
    text = text.removeprefix(".")
    segments: list[Segment] = []
    i, n = 0, len(text)
    while i < n:
        segment: Segment | None
        if text[i] == ".":
            if not segments:  # "$..a" is JSONPath's recursive descent, which this is not
                return None
            i += 1
        elif text[i] != "[" and segments:  # a name straight after "]"
            return None
        if text.startswith("[", i):  # 0.1.0 read "a.[0]" as "a[0]", and so do we
            segment, i = _parse_bracket(text, i + 1)
        else:
            start = i
            while i < n and text[i] not in ".[":
                i += 1
            name = text[start:i]
            segment = ANY if name == "*" else name or None
        if segment is None:
            return None
        segments.append(segment)
    return tuple(segments) or None


def _parse_bracket(text: str, i: int) -> tuple[Segment | None, int]:
    i = _skip_blanks(text, i)
    segment: Segment | None = None
    if text.startswith("*", i):
        segment, i = ANY, i + 1
    elif text[i : i + 1] in ("'", '"'):
        segment, i = _parse_quoted(text, i)
    elif match := _INDEX.match(text, i):
        if len(match.group()) <= _MAX_INDEX_DIGITS:
            segment = int(match.group())
        i = match.end()
    i = _skip_blanks(text, i)
    if segment is None or not text.startswith("]", i):
        return None, i
    return segment, i + 1


def _parse_quoted(text: str, i: int) -> tuple[str | None, int]:
    quote, i = text[i], i + 1
    chars: list[str] = []
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(chars), i + 1
        if char == "\\":
            if i + 1 == len(text) or text[i + 1] not in _ESCAPABLE:
                return None, i
            i += 1
            char = text[i]
        chars.append(char)
        i += 1
    return None, i


def _skip_blanks(text: str, i: int) -> int:
    while text.startswith((" ", "\t"), i):
        i += 1
    return i
