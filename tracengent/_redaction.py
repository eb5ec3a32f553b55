"""Scrub the fields the platform names from a tool call's body or arguments before they leave.

Redaction sits on the path of every governed call, so it is total: it never raises, a rule that
does not resolve (or cannot even be parsed) is skipped while the others still apply, and a body
that is not a JSON object or array goes out unchanged — a bad rule must not break the call.

Every rule is resolved against the *original* document before anything changes, so the result
does not depend on the order of the rules: removing ``[0]`` and ``[1]`` of one array removes the
first two elements whichever comes first. Where selections overlap, the outermost one decides
(what is inside a removed or masked value has already gone), and removal beats masking on the
same node, so the least possible leaves the agent.

Path grammar, a superset of 0.1.0's: ``$.a.b[0].c``; the ``$`` and the first dot are optional
(``$card`` = ``card`` = ``$.card``); ``*`` / ``[*]`` select every member of an object or array
(as in JSONPath, either spelling works on either container); ``['a.b']`` / ``["x"]`` name keys
holding dots, brackets, a leading ``$`` or nothing at all (``\\``, ``\\'`` and ``\\"`` are the only
escapes). 0.1.0 quietly dropped segments it could not read, so ``$.a[x]`` meant ``$.a`` and deleted
the whole parent; now a malformed path selects nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ._grammar.paths import ANY, Segment, parse_path

__all__ = ["MASK_TOKEN", "Redaction", "apply_redactions", "apply_redactions_to_value"]

MASK_TOKEN: Final = "***REDACTED***"


@dataclass(frozen=True)
class Redaction:
    """A field the platform requires scrubbed, as sent in ``redactions`` / ``redactFields``.

    ``strategy`` is ``remove`` or ``mask``, case-insensitive. Any other value masks: an unknown
    strategy still says the value must not leave, and masking keeps the key, so the receiver gets
    a call of the shape it expects rather than one missing a field it may require.
    """

    field: str
    strategy: str = "remove"


# A location as the actual keys and indexes down to it, innermost first: (parent link, key).
_Link: TypeAlias = "tuple[_Link, Any] | None"


def apply_redactions(json_text: str, rules: Iterable[Redaction]) -> str:
    """Return ``json_text`` with ``rules`` applied, as compact JSON with key order kept.

    When no rule resolves, the input itself comes back, byte for byte. The one exception is a
    document with duplicate keys: readers disagree on which duplicate counts, so it is always
    re-serialized the way it was read and checked (last one wins) rather than passed through.
    Like malformed JSON, a body the json module cannot read — nested deeper than the recursion
    limit, or an integer longer than Python's int/str digit limit — goes out as it came.
    """
    if not isinstance(json_text, str):
        return json_text
    duplicates: list[bool] = []

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates.append(True)
        return obj

    try:
        root = json.loads(json_text, object_pairs_hook=no_duplicates)
        if not isinstance(root, (dict, list)):
            return json_text
        redacted, changed = _redact(root, rules)
        if not changed and not duplicates:
            return json_text
        return _dump(redacted)
    except Exception:  # noqa: BLE001 - malformed, too deep, a huge number: the call still goes
        return json_text


def apply_redactions_to_value(value: Any, rules: Iterable[Redaction]) -> Any:
    """Return a redacted copy of an already-parsed JSON value (dict, list or tuple); never raises.

    ``value`` is not mutated, but only the containers on a redacted path are copied: untouched
    subtrees are shared with ``value``, and ``value`` itself comes back when no rule resolves, so
    copy the result before mutating it. Arrays on a redacted path come back as lists.
    """
    try:
        return _redact(value, rules)[0]
    except Exception:  # noqa: BLE001 - only a hostile object (raising __eq__) gets here
        return value


def _redact(root: Any, rules: Iterable[Redaction]) -> tuple[Any, bool]:
    selected = _Mark()
    for rule in _listed(rules):
        try:
            segments = parse_path(getattr(rule, "field", None))
            if segments is None:
                continue
            remove = _is_removal(getattr(rule, "strategy", None))
            for keys in _select(root, segments):
                selected.mark(keys, remove)
        except Exception:  # noqa: BLE001 - one odd rule object must not cost the others
            continue
    if not selected.below:
        return root, False
    return _rebuild(root, selected), True


class _Mark:
    """A node of the tree of selections: what happens to the document node here, if anything,
    and otherwise the marks of its members below."""

    __slots__ = ("below", "remove")

    def __init__(self) -> None:
        self.remove: bool | None = None  # True: remove, False: mask, None: only something below
        self.below: dict[Any, _Mark] = {}

    def mark(self, keys: list[Any], remove: bool) -> None:
        node = self
        for key in keys:
            if node.remove is not None:  # an enclosing node already goes or is masked
                return
            node = node.below.setdefault(key, _Mark())
        node.remove = remove or bool(node.remove)
        node.below.clear()


def _listed(rules: Iterable[Redaction]) -> list[Redaction]:
    if isinstance(rules, Redaction):
        return [rules]
    listed: list[Redaction] = []
    try:
        for rule in rules:
            listed.append(rule)
    except Exception:  # noqa: BLE001 - not iterable, or failed half way: keep what was read
        pass
    return listed


def _is_removal(strategy: object) -> bool:
    return isinstance(strategy, str) and strategy.strip().lower() == "remove"


def _select(root: Any, segments: tuple[Segment, ...]) -> list[list[Any]]:
    """The key paths ``segments`` resolve to, all taken from the document as it was."""
    # Breadth-first and iterative, each path a linked list, so time and stack stay linear in the
    # path's length however deep the document is.
    frontier: list[tuple[Any, _Link]] = [(root, None)]
    for segment in segments:
        frontier = [
            (child, (link, key))
            for node, link in frontier
            for key, child in _children(node, segment)
        ]
    paths: list[list[Any]] = []
    for _, link in frontier:
        keys: list[Any] = []
        while link is not None:
            link, key = link
            keys.append(key)
        keys.reverse()
        paths.append(keys)
    return paths


def _children(node: Any, segment: Segment) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        if segment is ANY:
            return list(node.items())
        if isinstance(segment, str) and segment in node:
            return [(segment, node[segment])]
    elif isinstance(node, (list, tuple)):
        if segment is ANY:
            return list(enumerate(node))
        if isinstance(segment, int) and 0 <= segment < len(node):
            return [(segment, node[segment])]
    return []


def _rebuild(root: Any, selected: _Mark) -> Any:
    # Copy-on-write along the marked paths only. Within one array, masks and copies are placed at
    # the original indexes before any element is removed, and removal runs from the highest index
    # down, so no removal shifts another.
    new_root = _copy(root)
    pending = [(selected, new_root)]
    while pending:
        marks, container = pending.pop()
        removed: list[Any] = []
        for key, mark in marks.below.items():
            if mark.remove is None:
                container[key] = _copy(container[key])
                pending.append((mark, container[key]))
            elif not mark.remove:
                container[key] = MASK_TOKEN
            else:
                removed.append(key)
        for key in sorted(removed, reverse=True) if isinstance(container, list) else removed:
            del container[key]
    return new_root


def value_at(document: Any, path: str | None) -> Any:
    """The value a path names (`$.amount`, `$.items[0].price`), or None: same syntax as rules."""
    segments = parse_path(path)
    if segments is None:
        return None
    node = document
    for segment in segments:
        if isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            node = node[segment]
            continue
        if isinstance(node, dict) and isinstance(segment, str) and segment in node:
            node = node[segment]
            continue
        return None  # no such member, or a wildcard: one value is wanted
    return node


def _copy(node: Any) -> Any:
    return dict(node) if isinstance(node, dict) else list(node)


def _dump(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a "\ud800" escape) only travels escaped
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text
