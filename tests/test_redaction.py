"""Redaction of outbound bodies: the API.md path grammar, 0.1.0's behaviour, wildcards, quoted
keys, order independence, and totality — checked against an independent oracle."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from tracengent._redaction import (
    MASK_TOKEN,
    Redaction,
    apply_redactions,
    apply_redactions_to_value,
)

M = MASK_TOKEN
BODY = '{"amount":280,"card":"4242","items":[{"sku":"a","card":"1"},{"sku":"b","card":"2"}]}'


def redact(body: str, *rules: Redaction) -> Any:
    out = apply_redactions(body, rules)
    return json.loads(out)


# --- API.md: "Redaction paths" ----------------------------------------------------------------


@pytest.mark.parametrize("field", ["$.card", "$card", "card", " $.card ", "$['card']"])
def test_spellings_of_one_field_remove_the_same_key(field: str) -> None:
    assert redact(BODY, Redaction(field)) == {
        "amount": 280,
        "items": [{"sku": "a", "card": "1"}, {"sku": "b", "card": "2"}],
    }


@pytest.mark.parametrize("strategy", ["mask", "MASK", "Mask", " mask "])
def test_mask_replaces_the_value_and_is_case_insensitive(strategy: str) -> None:
    assert redact(BODY, Redaction("$.card", strategy))["card"] == M


@pytest.mark.parametrize("strategy", ["remove", "REMOVE", "Remove"])
def test_remove_is_case_insensitive(strategy: str) -> None:
    assert "card" not in redact(BODY, Redaction("$.card", strategy))


def test_default_strategy_is_remove() -> None:
    assert Redaction("$.card").strategy == "remove"
    assert "card" not in redact(BODY, Redaction("$.card"))


@pytest.mark.parametrize("strategy", ["hash", "", "removal", None, 3])
def test_unknown_strategy_masks(strategy: Any) -> None:
    assert redact(BODY, Redaction("$.card", strategy))["card"] == M


def test_nested_path_with_index() -> None:
    body = '{"a":{"b":[{"c":1,"d":2},{"c":3}]}}'
    assert redact(body, Redaction("$.a.b[0].c")) == {"a": {"b": [{"d": 2}, {"c": 3}]}}
    assert redact(body, Redaction("$.a.b[1].c", "mask")) == {
        "a": {"b": [{"c": 1, "d": 2}, {"c": M}]}
    }


def test_remove_array_element_and_mask_array_element() -> None:
    assert redact('{"xs":[1,2,3]}', Redaction("$.xs[1]")) == {"xs": [1, 3]}
    assert redact('{"xs":[1,2,3]}', Redaction("$.xs[1]", "mask")) == {"xs": [1, M, 3]}
    assert redact("[1,2,3]", Redaction("$[0]")) == [2, 3]


def test_unresolved_rule_is_skipped_and_the_others_still_apply() -> None:
    out = redact(BODY, Redaction("$.nope"), Redaction("$.items[9]"), Redaction("$.amount", "mask"))
    assert out["amount"] == M
    assert out["card"] == "4242"


@pytest.mark.parametrize("body", ["42", '"card"', "null", "true", "  [1", "{", "", "not json"])
def test_non_container_or_malformed_body_comes_back_as_the_same_object(body: str) -> None:
    assert apply_redactions(body, [Redaction("$.card"), Redaction("card", "mask")]) is body


# --- 0.1.0 behaviour kept -----------------------------------------------------------------------


def test_output_is_compact_with_key_order_and_non_ascii_kept() -> None:
    body = '{ "z": 1, "é": "ü", "a": [1, 2], "card": 1 }'
    assert apply_redactions(body, [Redaction("card")]) == '{"z":1,"é":"ü","a":[1,2]}'


def test_nothing_resolves_returns_the_input_byte_for_byte() -> None:
    body = '{ "z" : 1,\n "card" : [ 1 ] }'
    assert apply_redactions(body, [Redaction("$.nope"), Redaction("$.card[5]")]) is body
    assert apply_redactions(body, []) is body


@pytest.mark.parametrize(
    "field",
    ["$.items[-1]", "$.items[2]", "$.items.0", "$.card.x", "$.amount[0]", "$[0]", "$", ""],
)
def test_paths_that_do_not_fit_the_document_do_not_resolve(field: str) -> None:
    assert apply_redactions(BODY, [Redaction(field)]) is BODY


# --- Beyond 0.1.0 -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["$.a[x]", "$.a[0", "$..a", "a.", "$.a[0]b", "$['a]", "$['\\q']"])
def test_malformed_paths_select_nothing(field: str) -> None:
    # 0.1.0 dropped what it could not read, so "$.a[x]" meant "$.a" and deleted the parent.
    body = '{"a":[{"a":1}],"x":2}'
    assert apply_redactions(body, [Redaction(field)]) is body


def test_array_wildcard() -> None:
    out = redact(BODY, Redaction("$.items[*].card"))
    assert out["items"] == [{"sku": "a"}, {"sku": "b"}]
    assert out["card"] == "4242"


def test_object_wildcard() -> None:
    body = '{"customer":{"name":"n","email":"e"},"id":1}'
    assert redact(body, Redaction("$.customer.*", "mask")) == {
        "customer": {"name": M, "email": M},
        "id": 1,
    }


def test_either_wildcard_spelling_works_on_either_container() -> None:
    assert redact(
        '{"o":{"a":1},"l":[1]}', Redaction("$.o[*]", "mask"), Redaction("$.l.*", "mask")
    ) == {
        "o": {"a": M},
        "l": [M],
    }
    assert redact('{"a":1,"b":[2]}', Redaction("*")) == {}


def test_quoted_keys() -> None:
    body = json.dumps({"a.b": 1, "a": {"b": 2}, "x[0]": 3, "$ref": 4, "ref": 5, "": 6, "it's": 7})
    out = redact(
        body,
        Redaction("$['a.b']"),
        Redaction('$["x[0]"]', "mask"),
        Redaction("$['$ref']"),
        Redaction("['']", "mask"),
        Redaction("$['it\\'s']"),
    )
    assert out == {"a": {"b": 2}, "x[0]": M, "ref": 5, "": M}


def test_dollar_prefix_is_stripped_once_so_dollar_keys_need_quotes() -> None:
    body = '{"$ref":1,"ref":2}'
    assert redact(body, Redaction("$ref")) == {"$ref": 1}
    assert redact(body, Redaction("$$ref")) == {"ref": 2}


def test_removing_several_elements_of_one_array_is_order_independent() -> None:
    body = '{"xs":["a","b","c","d","e"]}'
    rules = [Redaction("$.xs[0]"), Redaction("$.xs[1]"), Redaction("$.xs[3]")]
    assert redact(body, *rules) == {"xs": ["c", "e"]}
    assert redact(body, *reversed(rules)) == {"xs": ["c", "e"]}


def test_masks_and_removals_in_one_array_use_original_indexes() -> None:
    body = "[0,1,2,3]"
    rules = [Redaction("[0]"), Redaction("[2]", "mask"), Redaction("[3]")]
    assert redact(body, *rules) == [1, M]
    assert redact(body, *reversed(rules)) == [1, M]


def test_removal_beats_mask_on_the_same_node_and_inside_it() -> None:
    body = '{"a":{"b":1},"c":2}'
    for rules in (
        [Redaction("c", "mask"), Redaction("c")],
        [Redaction("c"), Redaction("c", "mask")],
    ):
        assert redact(body, *rules) == {"a": {"b": 1}}
    for rules in (
        [Redaction("a.b", "mask"), Redaction("a")],
        [Redaction("a"), Redaction("a.b", "mask")],
    ):
        assert redact(body, *rules) == {"c": 2}


def test_mask_of_a_node_hides_what_is_inside_it_whatever_else_applies() -> None:
    body = '{"a":{"b":1,"c":2}}'
    assert redact(body, Redaction("a.b"), Redaction("a", "mask")) == {"a": M}
    assert redact(body, Redaction("a", "mask"), Redaction("a.b")) == {"a": M}


def test_duplicate_keys_are_resolved_last_wins_and_never_passed_through() -> None:
    body = '{"a":{"card":1},"a":{"x":2}}'
    # Passing it through would let a first-wins reader see a card no rule was checked against.
    assert apply_redactions(body, [Redaction("$.a.card")]) == '{"a":{"x":2}}'
    assert apply_redactions('{"card":1,"card":2}', [Redaction("card")]) == "{}"


def test_nan_and_infinity_literals_survive_and_redaction_still_applies() -> None:
    out = apply_redactions('{"a":NaN,"b":-Infinity,"card":1}', [Redaction("card", "mask")])
    assert out == '{"a":NaN,"b":-Infinity,"card":"***REDACTED***"}'


def test_deep_nesting_does_not_raise() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert apply_redactions(deep, [Redaction("[0]")]) is deep
    value: Any = []
    for _ in range(50_000):
        value = [value]
    path = "$" + "[0]" * 49_999
    out = apply_redactions_to_value(value, [Redaction(path, "mask")])
    for _ in range(49_999):
        out = out[0]
    assert out == M


def test_huge_integers_do_not_raise() -> None:
    body = '{"n":' + "9" * 5000 + ',"card":1}'
    assert isinstance(apply_redactions(body, [Redaction("card")]), str)


def test_lone_surrogate_escape_comes_out_as_encodable_json() -> None:
    out = apply_redactions('{"s":"\\ud800é","card":1}', [Redaction("card")])
    out.encode("utf-8")
    assert json.loads(out) == {"s": "\ud800é"}


class _Hostile:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


def _then_fail() -> Iterator[Redaction]:
    yield Redaction("card")
    raise RuntimeError("rules source failed")


@pytest.mark.parametrize(
    "rules",
    [None, 5, "card", [None, 3, {"field": "card"}, _Hostile()], [Redaction(None)], [Redaction(7)]],  # type: ignore[arg-type]
)
def test_garbage_rules_never_raise_and_redact_nothing(rules: Any) -> None:
    assert apply_redactions(BODY, rules) is BODY


def test_good_rules_apply_among_garbage() -> None:
    rules: Any = [None, _Hostile(), Redaction(None), Redaction("card", "mask"), 3]  # type: ignore[arg-type]
    assert redact(BODY, *rules)["card"] == M
    assert "card" not in json.loads(apply_redactions(BODY, _then_fail()))
    assert "card" not in json.loads(apply_redactions(BODY, Redaction("card")))  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [None, 42, b'{"card":1}'])
def test_non_str_body_comes_back_unchanged(body: Any) -> None:
    assert apply_redactions(body, [Redaction("card")]) is body


# --- apply_redactions_to_value --------------------------------------------------------------------


def test_value_is_not_mutated_and_untouched_subtrees_are_shared() -> None:
    value: dict[str, Any] = {
        "card": "4242",
        "items": [{"card": 1}, {"card": 2}],
        "other": {"k": [1]},
    }
    before = copy.deepcopy(value)
    out = apply_redactions_to_value(
        value, [Redaction("$.items[0].card"), Redaction("card", "mask")]
    )
    assert value == before
    assert out == {"card": M, "items": [{}, {"card": 2}], "other": {"k": [1]}}
    assert out["other"] is value["other"]
    assert out["items"][1] is value["items"][1]


def test_value_comes_back_itself_when_nothing_resolves() -> None:
    value = {"a": 1}
    assert apply_redactions_to_value(value, [Redaction("$.b")]) is value
    for scalar in (None, 1, "card", b"x"):
        assert apply_redactions_to_value(scalar, [Redaction("card")]) is scalar


def test_tuples_are_arrays() -> None:
    value = {"xs": (1, 2, 3)}
    assert apply_redactions_to_value(value, [Redaction("$.xs[1]")]) == {"xs": [1, 3]}
    assert value == {"xs": (1, 2, 3)}


# --- Properties -------------------------------------------------------------------------------------

KEYS = st.one_of(
    st.sampled_from(
        ["card", "a", "a.b", "x[0]", "*", "$ref", "", " sp ", "it's", 'q"t', "b\\s", "0"]
    ),
    st.text(max_size=4),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)


def containers_of(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4)


VALUES = st.recursive(SCALARS, containers_of, max_leaves=25)
DOCUMENTS = st.one_of(st.lists(VALUES, max_size=4), st.dictionaries(KEYS, VALUES, max_size=5))
STRATEGIES = st.sampled_from(["remove", "REMOVE", " Remove ", "mask", "MASK", "Mask", "hash", ""])

# The oracle's own path model: ("k", key) / ("i", index) steps; ("*",) in a rule matches any step.
Step = tuple[Any, ...]
WILD: Step = ("*",)


def concrete_paths(node: Any, path: tuple[Step, ...] = ()) -> Iterator[tuple[Step, ...]]:
    children: list[tuple[Step, Any]] = []
    if isinstance(node, dict):
        children = [(("k", k), v) for k, v in node.items()]
    elif isinstance(node, list):
        children = [(("i", i), v) for i, v in enumerate(node)]
    for step, child in children:
        yield (*path, step)
        yield from concrete_paths(child, (*path, step))


def selects(rule: tuple[Step, ...], path: tuple[Step, ...]) -> bool:
    return len(rule) == len(path) and all(r in (WILD, p) for r, p in zip(rule, path, strict=True))


def expected(
    node: Any, remove_by_path: dict[tuple[Step, ...], bool], path: tuple[Step, ...] = ()
) -> Any:
    if isinstance(node, dict):
        items: list[tuple[Step, Any, Any]] = [(("k", k), k, v) for k, v in node.items()]
    elif isinstance(node, list):
        items = [(("i", i), i, v) for i, v in enumerate(node)]
    else:
        return node
    kept: list[tuple[Any, Any]] = []
    for step, key, child in items:
        here = (*path, step)
        action = remove_by_path.get(here)
        if action is True:
            continue
        kept.append((key, M if action is False else expected(child, remove_by_path, here)))
    return dict(kept) if isinstance(node, dict) else [v for _, v in kept]


def render(rule: tuple[Step, ...], draw: Any) -> str:
    body = ""
    for step in rule:
        if step == WILD:
            body += draw(st.sampled_from(["[*]", ".*", "[ * ]"]))
        elif step[0] == "i":
            body += draw(st.sampled_from([f"[{step[1]}]", f"[ {step[1]} ]"]))
        else:
            key: str = step[1]
            forms = [
                "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']",
                '["' + key.replace("\\", "\\\\").replace('"', '\\"') + '"]',
            ]
            if key and key == key.strip() and key != "*" and not set(key) & set(".["):
                forms.append("." + key)
            body += draw(st.sampled_from(forms))
    prefixes = ["$" + body]
    if body.startswith("["):
        prefixes.append(body)
    else:
        prefixes.append("$" + body[1:])
        if not body.startswith(".$"):
            prefixes += [body, body[1:]]
    return str(draw(st.sampled_from(prefixes))) + str(draw(st.sampled_from(["", " "])))


@st.composite
def documents_and_rules(draw: Any) -> tuple[Any, list[tuple[tuple[Step, ...], str]]]:
    doc = draw(DOCUMENTS)
    paths = list(concrete_paths(doc))
    rules = []
    for _ in range(draw(st.integers(0, 5))):
        if paths and draw(st.booleans()):
            base = list(draw(st.sampled_from(paths)))
        else:
            base = [("i", 0)] * draw(st.integers(1, 3))
        for n, step in enumerate(base):
            roll = draw(st.integers(0, 9))
            if roll == 0:
                base[n] = WILD
            elif roll == 1:
                base[n] = ("i", draw(st.integers(0, 4))) if step[0] == "k" else ("k", draw(KEYS))
        if draw(st.integers(0, 9)) == 0:
            base.append(WILD)
        rules.append((tuple(base), draw(STRATEGIES)))
    return doc, rules


def oracle(doc: Any, rules: list[tuple[tuple[Step, ...], str]]) -> dict[tuple[Step, ...], bool]:
    remove_by_path: dict[tuple[Step, ...], bool] = {}
    for path in concrete_paths(doc):
        for rule, strategy in rules:
            if selects(rule, path):
                is_removal = strategy.strip().lower() == "remove"
                remove_by_path[path] = remove_by_path.get(path, False) or is_removal
    return remove_by_path


@settings(max_examples=200, deadline=None)
@given(case=documents_and_rules(), data=st.data())
def test_property_exactly_the_selected_values_are_removed_or_masked(case: Any, data: Any) -> None:
    doc, rules = case
    text = json.dumps(
        doc, indent=data.draw(st.sampled_from([None, 1])), ensure_ascii=data.draw(st.booleans())
    )
    redactions = [Redaction(render(rule, data.draw), strategy) for rule, strategy in rules]
    remove_by_path = oracle(doc, rules)

    out = apply_redactions(text, redactions)
    if not remove_by_path:
        assert out is text
    else:
        assert out == json.dumps(
            expected(doc, remove_by_path), separators=(",", ":"), ensure_ascii=False
        )

    shuffled = data.draw(st.permutations(redactions))
    assert apply_redactions(text, shuffled) == out

    before = copy.deepcopy(doc)
    assert apply_redactions_to_value(doc, redactions) == json.loads(out)
    assert doc == before


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=8),
    picks=st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["remove", "mask"])), max_size=8),
    data=st.data(),
)
def test_property_many_rules_on_one_array_act_on_original_indexes(
    items: list[int], picks: list[tuple[int, str]], data: Any
) -> None:
    rules = data.draw(st.permutations([Redaction(f"$.xs[{i}]", s) for i, s in picks]))
    removed = {i for i, s in picks if s == "remove"}
    masked = {i for i, s in picks if s == "mask"} - removed
    want = [M if i in masked else x for i, x in enumerate(items) if i not in removed]
    assert apply_redactions_to_value({"xs": items}, rules) == {"xs": want}


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(st.text(max_size=40), DOCUMENTS.map(json.dumps), VALUES.map(json.dumps)),
    rules=st.lists(
        st.builds(
            Redaction,
            st.one_of(
                st.text(alphabet="$.[]*'\"\\ 0123ab-", max_size=12), st.none(), st.integers()
            ),
            st.one_of(STRATEGIES, st.none(), st.integers()),
        ),
        max_size=4,
    ),
)
def test_property_never_raises_and_yields_json_or_the_input(
    text: str, rules: list[Redaction]
) -> None:
    out = apply_redactions(text, rules)
    assert isinstance(out, str)
    if out is not text:
        parsed = json.loads(out)
        assert isinstance(parsed, (dict, list))
        assert out == json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
