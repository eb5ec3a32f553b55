"""to_jsonable/encode_json: every value gets a JSON rendering, and nothing ever raises."""

from __future__ import annotations

import base64
import collections
import copy
import dataclasses
import enum
import json
import math
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest import mock

import pydantic_core
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import BaseModel

from tracengent._jsonsafe import (
    CIRCULAR,
    INT_TOO_LARGE,
    MAX_DEPTH,
    TOO_DEEP,
    _is_plain,
    encode_json,
    to_jsonable,
)


def assert_encodable(value: Any) -> None:
    json.dumps(value, allow_nan=False)
    pydantic_core.to_json(value)


# --- plain JSON --------------------------------------------------------------------------------------


def test_plain_payload_is_returned_as_is() -> None:
    payload = {"q": "flights to Lisbon", "n": 3, "opts": [1.5, True, None, {"é": "ü"}]}
    assert to_jsonable(payload) is payload


@pytest.mark.parametrize(
    "value", ["", "text", "naïve ✈", 0, -(2**80), 1.5, -0.0, True, False, None]
)
def test_plain_scalars_pass_through(value: object) -> None:
    result = to_jsonable(value)
    assert result == value and type(result) is type(value)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=30,
    )
)
def test_any_plain_json_is_returned_as_is(value: Any) -> None:
    assert to_jsonable(value) is value


@pytest.mark.parametrize(
    "value",
    [datetime(2025, 1, 1), (1,), {1: 2}, [math.nan], {"a": [Decimal(1)]}, "\udcff", 10**5000],
    ids=["datetime", "tuple", "int-key", "nan", "decimal", "surrogate", "huge-int"],
)
def test_fast_check_rejects_non_plain_values_without_raising(value: object) -> None:
    # A raise here would be swallowed by to_jsonable and only show up as a slow, deep stack.
    assert _is_plain(value, 0) is False


# --- scalars -----------------------------------------------------------------------------------------


def test_non_finite_floats_become_their_names() -> None:
    assert to_jsonable([math.nan, math.inf, -math.inf]) == ["NaN", "Infinity", "-Infinity"]


def test_big_ints_are_kept_while_they_can_be_printed() -> None:
    assert to_jsonable(2**64) == 2**64
    big = [10**1000]  # past JSON interop, still within the digit limit
    assert to_jsonable(big) is big
    assert to_jsonable([10**5000]) == [INT_TOO_LARGE]
    assert to_jsonable(-(10**5000)) == INT_TOO_LARGE


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="no digit limit here")
def test_big_int_limit_follows_the_interpreter_setting() -> None:
    previous = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(0)
        assert to_jsonable(10**5000) == 10**5000
        sys.set_int_max_str_digits(1000)
        assert to_jsonable(10**999) == INT_TOO_LARGE
        assert to_jsonable(10**900) == 10**900
    finally:
        sys.set_int_max_str_digits(previous)


def test_dates_and_times_become_iso_8601() -> None:
    aware = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert to_jsonable(
        {"naive": datetime(2025, 1, 2, 3, 4, 5), "aware": aware, "d": date(2025, 1, 2)}
    ) == {
        "naive": "2025-01-02T03:04:05",
        "aware": "2025-01-02T03:04:05.000006+02:00",
        "d": "2025-01-02",
    }
    assert to_jsonable(time(13, 14, 15)) == "13:14:15"


def test_decimals_become_numbers() -> None:
    integral = to_jsonable(Decimal("42.000"))
    assert integral == 42 and type(integral) is int
    fractional = to_jsonable(Decimal("19.99"))
    assert fractional == 19.99 and type(fractional) is float
    assert to_jsonable(Decimal("1E+5")) == 100_000
    assert to_jsonable([Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Inf")]) == [
        "NaN",
        "NaN",
        "Infinity",
        "-Infinity",
    ]
    assert to_jsonable(Decimal("1E+100000")) == "Infinity"  # not a 100k-digit int


def test_uuid_becomes_its_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert to_jsonable(value) == "12345678-1234-5678-1234-567812345678"


def test_bytes_become_text_or_marked_base64() -> None:
    assert to_jsonable(b"caf\xc3\xa9") == "café"
    assert to_jsonable(bytearray(b"abc")) == "abc"
    assert to_jsonable(memoryview(b"xyz")) == "xyz"
    binary = bytes([0xFF, 0x00, 0x10])
    rendered = to_jsonable(binary)
    assert isinstance(rendered, str) and rendered.startswith("base64:")
    assert base64.b64decode(rendered.removeprefix("base64:")) == binary


def test_lone_surrogates_become_visible_escapes() -> None:
    rendered = to_jsonable({"path\udcff": "file-\udc80.txt"})
    assert rendered == {"path\\udcff": "file-\\udc80.txt"}
    assert_encodable(rendered)


def test_str_and_int_subclasses_become_exact_types() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    class Ratio(float):
        pass

    rendered = to_jsonable([Name("x"), Count(3), Ratio(0.5), Ratio(math.inf)])
    assert rendered == ["x", 3, 0.5, "Infinity"]
    assert [type(item) for item in rendered] == [str, int, float, str]


class Color(enum.Enum):
    RED = "red"
    NESTED = (1, 2)


class Level(enum.IntEnum):
    HIGH = 3


class Mode(str, enum.Enum):
    FAST = "fast"


def test_enums_become_their_values() -> None:
    rendered = to_jsonable([Color.RED, Color.NESTED, Level.HIGH, Mode.FAST])
    assert rendered == ["red", [1, 2], 3, "fast"]
    assert [type(item) for item in rendered] == [str, list, int, str]


def test_exceptions_become_type_and_message() -> None:
    assert to_jsonable(ValueError("bad input")) == {"type": "ValueError", "message": "bad input"}

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert to_jsonable(Unprintable()) == {"type": "Unprintable", "message": "<unprintable>"}


# --- containers --------------------------------------------------------------------------------------


def test_sequences_become_lists() -> None:
    assert to_jsonable((1, (2, 3))) == [1, [2, 3]]
    assert to_jsonable(collections.deque([1, 2])) == [1, 2]
    assert to_jsonable(range(3)) == [0, 1, 2]


def test_sets_become_sorted_lists() -> None:
    assert to_jsonable({3, 1, 2}) == [1, 2, 3]
    assert to_jsonable(frozenset({"b", "a", "c"})) == ["a", "b", "c"]


def test_unsortable_sets_still_render_deterministically() -> None:
    one = to_jsonable({1, "a", None, 2.5})
    other = to_jsonable({None, 2.5, "a", 1})
    assert one == other
    assert sorted(one, key=repr) == sorted([1, "a", None, 2.5], key=repr)  # type: ignore[arg-type]


def test_iterators_are_not_consumed() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    generator = numbers()
    iterator = iter([1, 2])
    assert to_jsonable({"g": generator, "i": iterator}) == {
        "g": "<unserializable: generator>",
        "i": "<unserializable: list_iterator>",
    }
    assert next(generator) == 1
    assert next(iterator) == 1


def test_mapping_keys_become_strings() -> None:
    class NoStr:
        def __str__(self) -> str:
            raise RuntimeError("no")

    rendered = to_jsonable({1: "a", 2.5: "b", None: "c", Color.RED: "d", Level.HIGH: "e"})
    assert rendered == {"1": "a", "2.5": "b", "None": "c", "red": "d", "3": "e"}
    assert to_jsonable({NoStr(): 1}) == {"<unserializable: NoStr>": 1}
    assert to_jsonable(collections.OrderedDict([("b", 1), ("a", 2)])) == {"b": 1, "a": 2}


@dataclasses.dataclass
class Leg:
    origin: str
    departs: datetime
    tags: set[str]


@dataclasses.dataclass
class Node:
    name: str
    next: Node | None = None


def test_dataclasses_become_dicts_recursively() -> None:
    leg = Leg("LIS", datetime(2025, 5, 1, 9, 30), {"b", "a"})
    assert to_jsonable({"legs": [leg]}) == {
        "legs": [{"origin": "LIS", "departs": "2025-05-01T09:30:00", "tags": ["a", "b"]}]
    }


def test_dataclasses_are_not_deep_copied() -> None:
    class NoCopy:
        def __deepcopy__(self, memo: object) -> NoCopy:
            raise RuntimeError("no copies")

    holder = Node("x", NoCopy())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        copy.deepcopy(holder)  # what dataclasses.asdict would trip over
    assert to_jsonable(holder) == {"name": "x", "next": "<unserializable: NoCopy>"}


class Booking(BaseModel):
    ref: str
    when: datetime
    price: Decimal


def test_pydantic_models_use_their_json_dump() -> None:
    booking = Booking(ref="ABC", when=datetime(2025, 1, 1, 12), price=Decimal("10.50"))
    assert to_jsonable({"booking": booking}) == {
        "booking": {"ref": "ABC", "when": "2025-01-01T12:00:00", "price": "10.50"}
    }


def test_model_dump_is_duck_typed_and_guarded() -> None:
    class LooksLikeModel:
        def model_dump(self, *, mode: str) -> dict[str, Any]:
            return {"mode": mode, "n": math.nan}

    class BrokenModel:
        def model_dump(self, *, mode: str) -> dict[str, Any]:
            raise RuntimeError("boom")

    assert to_jsonable(LooksLikeModel()) == {"mode": "json", "n": "NaN"}
    assert to_jsonable(BrokenModel()) == "<unserializable: BrokenModel>"
    assert to_jsonable(Booking) == "<unserializable: ModelMetaclass>"  # a class, not an instance


def test_objects_answering_every_attribute_terminate() -> None:
    # Each MagicMock().model_dump() returns another MagicMock: only the depth bound stops it.
    assert to_jsonable(mock.MagicMock()) == TOO_DEEP


# --- cycles and depth --------------------------------------------------------------------------------


def test_circular_list_and_dict() -> None:
    items: list[Any] = [1]
    items.append(items)
    table: dict[str, Any] = {"a": 1}
    table["me"] = table
    assert to_jsonable(items) == [1, CIRCULAR]
    assert to_jsonable(table) == {"a": 1, "me": CIRCULAR}
    assert to_jsonable({"wrap": [table]}) == {"wrap": [{"a": 1, "me": CIRCULAR}]}


def test_circular_dataclass() -> None:
    first = Node("a")
    first.next = Node("b", first)
    assert to_jsonable(first) == {"name": "a", "next": {"name": "b", "next": CIRCULAR}}


def test_cycle_with_many_branches_is_fast() -> None:
    # Exploring every path to the depth limit would take 2**64 steps.
    items: list[Any] = []
    items.extend([items, items])
    assert to_jsonable(items) == [CIRCULAR, CIRCULAR]


def test_shared_references_are_not_circular() -> None:
    shared = [1]
    assert to_jsonable([shared, {"again": shared}]) == [[1], {"again": [1]}]


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _depth(value: Any) -> int:
    levels = 0
    while isinstance(value, list):
        levels += 1
        value = value[0] if value else None
    return levels


def test_nesting_up_to_the_limit_is_kept() -> None:
    deepest = _nested(MAX_DEPTH + 1)  # containers at depths 0..MAX_DEPTH
    assert to_jsonable(deepest) is deepest


def test_nesting_past_the_limit_is_cut() -> None:
    rendered = to_jsonable(_nested(MAX_DEPTH + 2))
    assert _depth(rendered) == MAX_DEPTH + 1
    innermost = rendered
    for _ in range(MAX_DEPTH):
        innermost = innermost[0]  # type: ignore[index]
    assert innermost == [TOO_DEEP]


def test_very_deep_nesting_does_not_raise() -> None:
    rendered = to_jsonable(_nested(50_000))
    assert _depth(rendered) == MAX_DEPTH + 1
    assert_encodable(rendered)


# --- the unknown -------------------------------------------------------------------------------------


class Opaque:
    pass


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class LyingMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("name")


class Disguised(metaclass=LyingMeta):
    pass


def test_unknown_objects_become_placeholders() -> None:
    assert to_jsonable(Opaque()) == "<unserializable: Opaque>"
    assert to_jsonable([Hostile()]) == ["<unserializable: Hostile>"]
    assert to_jsonable(Disguised()) == "<unserializable: Disguised>"
    assert to_jsonable(timedelta(seconds=1)) == "<unserializable: timedelta>"


def test_mapping_that_fails_midway_becomes_a_placeholder() -> None:
    class Flaky(collections.abc.Mapping[str, int]):
        def __getitem__(self, key: str) -> int:
            raise RuntimeError("gone")

        def __iter__(self) -> Iterator[str]:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    assert to_jsonable({"ok": 1, "flaky": Flaky()}) == {
        "ok": 1,
        "flaky": "<unserializable: Flaky>",
    }


# --- encode_json -------------------------------------------------------------------------------------


def test_encode_json_is_compact_utf8() -> None:
    assert encode_json({"q": "été", "n": [1, 2]}) == '{"q":"été","n":[1,2]}'.encode()


def test_encode_json_goes_through_to_jsonable() -> None:
    value = {"when": date(2025, 1, 1), 1: math.nan, "s": "\udcff"}
    assert encode_json(value) == b'{"when":"2025-01-01","1":"NaN","s":"\\\\udcff"}'


# --- anything at all ---------------------------------------------------------------------------------


DAY = timedelta(hours=23, minutes=59)


def _disguised() -> Disguised:
    return Disguised()  # via a function: hypothesis would read the class's raising __name__


def _huge_int(sign: int) -> int:
    return sign * 10**5000  # built lazily: hypothesis cannot repr it as a sampled constant


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([1, -1]).map(_huge_int),
    st.integers(min_value=590, max_value=4200).map(lambda exponent: -(10**exponent)),
    st.floats(),
    st.text(),
    st.binary(max_size=12),
    st.decimals(),
    st.datetimes(timezones=st.none() | st.builds(timezone, st.timedeltas(-DAY, DAY))),
    st.dates(),
    st.times(),
    st.uuids(),
    st.sampled_from([Color.RED, Color.NESTED, Level.HIGH, Mode.FAST]),
    st.builds(ValueError, st.text(max_size=5)),
    st.builds(Opaque),
    st.builds(Hostile),
    st.builds(_disguised),
    st.builds(lambda: iter([1, 2])),
    st.builds(lambda: (i for i in range(3))),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hashable = st.one_of(st.integers(), st.text(max_size=4), st.none(), st.booleans())
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=4).map(collections.deque),
        st.dictionaries(st.one_of(hashable, st.floats(), st.text()), inner, max_size=4),
        st.sets(hashable, max_size=4),
        st.frozensets(hashable, max_size=4),
        st.builds(Pair, inner, inner),
        st.builds(_cyclic, st.lists(inner, max_size=3)),
    )


def _cyclic(items: list[Any]) -> list[Any]:
    items.append(items)
    items.append({"back": items})
    return items


anything = st.recursive(scalars, _containers, max_leaves=25)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(anything)
def test_anything_renders_as_encodable_json(value: Any) -> None:
    rendered = to_jsonable(value)
    assert_encodable(rendered)
    # What comes out is plain JSON already, so it is returned untouched the second time.
    assert to_jsonable(rendered) is rendered
    encoded = encode_json(value)
    assert json.loads(encoded) == json.loads(json.dumps(rendered))
