"""Form encoding (``application/x-www-form-urlencoded``, and query strings), read strictly into
the JSON object the platform decides on, and written back after redaction.

Servers disagree on forms at the edges: on a repeated key (first, last, or a list), on ``;`` as
a second separator, on ``a[b]=1`` (a nested object for Rack, PHP and qs; a flat key for Go or
Werkzeug), on ``a.b`` (nested for Spring, ``a_b`` for PHP), on keys that differ only in case
(one key for case-insensitive binders). A gate that reads such a form one way decides on values
the tool may read another way, so only the part of the grammar on which they agree is read, and
anything else is unreadable (`FormError`), which the gate denies on a bound endpoint:

- pairs are separated by ``&`` (empty pieces are skipped); a pair is ``key=value`` or ``key``
  (value ``""``); the raw text is printable ASCII without space, ``;`` or ``#``; ``%XX``
  escapes are well formed; ``+`` is a space; escapes decode as UTF-8;
- a key is a name, then ``[segment]`` parts, optionally ending in ``[]``: ``card[number]``
  becomes ``{"card": {"number": ...}}`` and ``expand[]=a&expand[]=b`` becomes
  ``{"expand": ["a", "b"]}``; a name is ASCII letters, digits and ``_ - $ ~ : @ ! *`` (no
  ``.``, which Spring nests and PHP turns into ``_``; no quotes or braces, so a JSON text is
  never taken for a form), a segment any text without brackets or control characters;
- a key given twice, a key both a value and a container, two keys at one level that differ only
  in case (``amount`` / ``AMOUNT``, compared case-folded) are ambiguous.

Values stay strings in the tree that is redacted and written back. In the view the platform
decides on (`platform_view`), a value in plain decimal notation (``-?(0|[1-9][0-9]*)(.[0-9]+)?``,
ASCII digits, at most 15 significant digits) becomes a number, because the platform compares an
amount with a limit only when it is a number, and every server reads those digits as that number
(15 digits are exact in a double). Anything else (``1e3``, ``0x10``, ``+5``, `` 5``, ``09``,
``1_000``, non-ASCII digits, more digits) stays a string, which the platform does not take for an
amount: a limit on it is then a deny, never a different number than the one the tool reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import quote_plus

from ._redaction import Redaction, apply_redactions_to_value

__all__ = ["FormError", "Tree", "encode_form", "parse_form", "platform_view", "redact_form"]

#: The tree of a form: nested dicts of lists and strings, in the order keys first appear.
Tree: TypeAlias = dict[str, Any]


class FormError(ValueError):
    """The form cannot be read unambiguously; the message says what in it."""


_RAW: Final = re.compile(r"[!-~]*")  # printable ASCII, no space
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_KEY: Final = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_NAME: Final = re.compile(r"[A-Za-z0-9_$~:@!*\-]+")
_SEGMENTS: Final = re.compile(r"\[([^\[\]]*)\]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_MAX_DIGITS: Final = 15
_LIST = object()  # the "[]" segment
_INDEX: Final = re.compile(r"\[\s*([0-9]+)\s*\]")


def parse_form(text: str) -> Tree:
    """The form's tree; raises `FormError` naming what cannot be read unambiguously."""
    if not _RAW.fullmatch(text) or ";" in text or "#" in text:
        raise FormError("it holds a space, ';', '#', a control or a non-ASCII character")
    if _BAD_ESCAPE.search(text):
        raise FormError("it holds a '%' that is not a %XX escape")
    root: Tree = {}
    folded: dict[int, set[str]] = {}  # per object (by id): its keys, case-folded
    for piece in text.split("&"):
        if not piece:
            continue
        raw_key, _, raw_value = piece.partition("=")
        key, value = _decode(raw_key), _decode(raw_value)
        _insert(root, _path(key), value, key, folded)
    return root


def encode_form(tree: Tree) -> str:
    """``tree`` as form text (brackets escaped, as `urllib.parse.urlencode` writes them)."""
    pairs: list[str] = []
    stack: list[tuple[str, Any]] = [(quote_plus(k, safe=""), v) for k, v in reversed(tree.items())]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(
                (f"{key}%5B{quote_plus(k, safe='')}%5D", v) for k, v in reversed(value.items())
            )
        elif isinstance(value, list):
            pairs.extend(f"{key}%5B%5D={quote_plus(_text(v), safe='')}" for v in value)
        else:
            pairs.append(f"{key}={quote_plus(_text(value), safe='')}")
    return "&".join(pairs)


def redact_form(tree: Tree, rules: Sequence[Redaction]) -> Tree | None:
    """``tree`` with ``rules`` applied, or None when they change nothing.

    A form spells an array element ``items[0][pan]``, which reads as the key ``"0"``, so a rule
    for ``$.items[0].pan`` also applies as ``$.items['0'].pan``: a redaction written for the JSON
    shape of a call must not miss its form shape.
    """
    expanded = list(rules)
    for rule in rules:
        path = getattr(rule, "field", None)
        if isinstance(path, str) and _INDEX.search(path):
            keyed = _INDEX.sub(r"['\1']", path)
            expanded.append(Redaction(keyed, getattr(rule, "strategy", "remove")))
    redacted = apply_redactions_to_value(tree, expanded)
    return None if redacted is tree else redacted


def platform_view(tree: Any) -> Any:
    """The tree as the platform sees it: plain decimal values as numbers (module docstring)."""
    if isinstance(tree, dict):
        return {key: platform_view(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [platform_view(value) for value in tree]
    if isinstance(tree, str) and _NUMBER.fullmatch(tree):
        digits = tree.lstrip("-").replace(".", "").lstrip("0")
        if len(digits) <= _MAX_DIGITS:
            return float(tree) if "." in tree else int(tree)
    return tree


def _text(value: Any) -> str:
    # Redaction masks with a string; anything else in the tree is a string already.
    return value if isinstance(value, str) else str(value)


def _decode(raw: str) -> str:
    data = bytearray()
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "%":
            data.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        data.extend(b" " if char == "+" else char.encode("ascii"))
        i += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("an escape in it is not UTF-8") from None


def _path(key: str) -> list[Any]:
    match = _KEY.fullmatch(key)
    if match is None or not _NAME.fullmatch(match.group(1)):
        raise FormError(f"the key {_quoted(key)} is not a plain name with [segments]")
    segments: list[Any] = [match.group(1)]
    for segment in _SEGMENTS.findall(match.group(2)):
        if segments[-1] is _LIST:
            raise FormError(f"the key {_quoted(key)} has '[]' before its end")
        if _CONTROL.search(segment):
            raise FormError(f"the key {_quoted(key)} holds a control character")
        segments.append(_LIST if segment == "" else segment)
    return segments


def _insert(root: Tree, path: list[Any], value: str, key: str, folded: dict[int, set[str]]) -> None:
    node: Any = root
    for depth, segment in enumerate(path):
        last = depth == len(path) - 1
        if segment is _LIST:  # always last
            if not isinstance(node, list):
                raise FormError(f"the key {_quoted(key)} is given both with and without '[]'")
            node.append(value)
            return
        if not isinstance(node, dict):
            raise FormError(f"the key {_quoted(key)} is both a value and a container")
        following = None if last else path[depth + 1]
        wanted: Any = value if last else ([] if following is _LIST else {})
        child = node.get(segment)
        if child is None:
            seen = folded.setdefault(id(node), set())
            if segment.casefold() in seen:
                raise FormError(
                    f"the key {_quoted(key)} differs only in case from another at its level"
                )
            seen.add(segment.casefold())
            node[segment] = child = wanted
            if last:
                return
        elif last or isinstance(child, str) or isinstance(child, list) != (following is _LIST):
            raise FormError(f"the key {_quoted(key)} is given more than once, or in two shapes")
        node = child


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
