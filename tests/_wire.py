"""Compare what an SDK sent with the contract's fixture, modulo the fixture's sentinels."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from tracengent_api.contract import SENTINELS

_VOLATILE = {
    "id": re.compile(r"^[A-Za-z]+_[A-Za-z0-9_-]+$"),
    "token": re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"),
}


def compact(value: Any) -> bytes:
    """The contract's serialization: compact separators, UTF-8, key order kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _is_timestamp(value: str) -> bool:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _matches(kind: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if kind == "timestamp":
        return _is_timestamp(value)
    return bool(_VOLATILE[kind].match(value))


def normalize(actual: Any, fixture: Any) -> Any:
    """`actual` with every volatile value the fixture shows as a sentinel replaced by it.

    A value is only replaced when it has the sentinel's kind (an id looks like `evt_…`, a
    timestamp parses as ISO-8601 with an offset, a token is a JWT), so a wrong value still shows.
    """
    if isinstance(fixture, str) and fixture in SENTINELS:
        return fixture if _matches(SENTINELS[fixture], actual) else actual
    if isinstance(fixture, dict) and isinstance(actual, dict):
        return {k: normalize(v, fixture.get(k)) for k, v in actual.items()}
    if isinstance(fixture, list) and isinstance(actual, list):
        return [
            normalize(a, fixture[i] if i < len(fixture) else None) for i, a in enumerate(actual)
        ]
    return actual


def without(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in keys}
    return value


def assert_conforms(body: bytes, fixture: Any, ignore_keys: tuple[str, ...] = ()) -> None:
    """`body` is compact JSON equal, byte for byte, to the fixture modulo sentinels."""
    parsed = json.loads(body)
    assert body == compact(parsed), "the body is not compact JSON"
    assert compact(without(normalize(parsed, fixture), ignore_keys)) == compact(
        without(fixture, ignore_keys)
    )
