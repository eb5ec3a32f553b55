"""The policy file's pydantic models: the demo policy ships as package data and documents every
key they declare, every table refuses keys it does not declare, and whatever a file holds, a
problem is worded by the policy (a key path and a fix), never by pydantic."""

from __future__ import annotations

import math
import re
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tracengent.platform
from tracengent.platform import DEFAULT_POLICY_TOML, PolicyError, parse_policy
from tracengent.platform._policy_load import default_policy
from tracengent.platform._policy_schema import PolicyDocument, Table


def tables() -> list[type[Table]]:
    found: list[type[Table]] = []
    pending: list[type[Table]] = [Table]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def test_the_demo_policy_is_a_package_data_file() -> None:
    text = (files("tracengent.platform") / "demo_policy.toml").read_text(encoding="utf-8")
    assert text == DEFAULT_POLICY_TOML
    assert tracengent.platform.DEFAULT_POLICY_TOML is DEFAULT_POLICY_TOML
    assert default_policy() == parse_policy(text)


@pytest.mark.parametrize("table", tables(), ids=lambda t: t.__name__)
def test_every_key_is_documented_in_the_demo_policy(table: type[Table]) -> None:
    # The demo policy is the reference for the format: a key it does not show is a key nobody
    # can learn about.
    for key in table.model_fields:
        assert re.search(rf"\b{key}\b", DEFAULT_POLICY_TOML), f"{table.__name__}.{key}"


@pytest.mark.parametrize("table", tables(), ids=lambda t: t.__name__)
def test_every_table_refuses_keys_it_does_not_declare(table: type[Table]) -> None:
    assert table.model_config.get("extra") == "forbid"
    assert set(table.keys_in_check_order()) == set(table.model_fields)


# Values of every TOML type, and strings that look like what the keys hold.
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            " ",
            "EUR",
            "usd",
            "payments:*",
            "*",
            "a b",
            "api.example.com",
            "/v1/x",
            "$.a",
            "$..a",
            "POST",
            "mask",
            "allow",
            "{message}",
            "{shape}",
            "agk_1",
        ]
    ),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def _table_of(table: type[Table]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from([*table.model_fields, "typo"])
    return st.dictionaries(keys, _values, max_size=4)


_agent = next(t for t in tables() if t.__name__ == "AgentTable")
_limit = next(t for t in tables() if t.__name__ == "LimitTable")
_http = next(t for t in tables() if t.__name__ == "HttpBindingTable")
_named = next(t for t in tables() if t.__name__ == "NamedBindingTable")
_documents = st.fixed_dictionaries(
    {},
    optional={
        **{key: _values for key in PolicyDocument.model_fields},
        "agents": st.lists(st.one_of(_table_of(_agent), _values), max_size=3),
        "limits": st.lists(st.one_of(_table_of(_limit), _values), max_size=2),
        "tools": st.fixed_dictionaries(
            {},
            optional={
                "http": st.lists(_table_of(_http), max_size=2),
                "mcp": st.lists(_table_of(_named), max_size=2),
                "grpc": _values,
            },
        ),
    },
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return "{" + ", ".join(f"{_quote(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _quote(text: str) -> str:
    return '"' + "".join(map(_char, text)) + '"'


def _char(char: str) -> str:
    if char.isprintable() and char not in '"\\':
        return char
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_any_document_is_a_policy_or_problems_in_the_policys_words(doc: dict[str, Any]) -> None:
    text = "\n".join(f"{_quote(key)} = {_toml(value)}" for key, value in doc.items())
    try:
        parse_policy(text, "fuzz.toml")
    except PolicyError as error:
        assert error.problems
        for problem in error.problems:
            assert "Input should be" not in problem and "pydantic" not in problem, problem
            assert "{message}" not in problem.split(": ", 1)[1] or "{message}" in text
            path = problem.split(": ", 1)[0]
            root = re.split(r"[.\[]", path, maxsplit=1)[0].strip('"')
            assert root == "(top level)" or root in doc or root in PolicyDocument.model_fields
