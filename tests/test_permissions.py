"""Permission patterns (API.md's matcher), attenuation coverage, and reading token claims."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from typing import Any

import jwt
import pytest
from hypothesis import given, settings, strategies as st

from tracengent._permissions import (
    TokenClaims,
    any_permission_matches,
    pattern_covers,
    permission_matches,
    read_claims,
)

KEY = "k" * 32  # long enough that PyJWT does not warn about a weak HMAC key


def token(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, KEY, algorithm="HS256")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def handmade(payload: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(b'sig')}"


# --- permission_matches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "permission", "granted"),
    [
        ("*", "flights:book", True),
        ("*", "anything", True),
        ("flights:book", "flights:book", True),
        ("flights:book", "flights:cancel", False),
        ("flights:book", "Flights:book", False),
        ("flights:*", "flights:book", True),
        ("flights:*", "flights:book:intl", True),
        ("flights:*", "flights:", True),
        ("flights:*", "flightsx:book", False),
        ("flights:*", "flights", False),
        ("flights:*", "hotels:book", False),
        ("flights:book:*", "flights:book:intl", True),
        ("flights:book:*", "flights:cancel", False),
        ("flights*", "flightsx", False),
        ("flights*", "flights*", True),
        ("*:book", "flights:book", False),
        ("", "flights:book", False),
        ("", "", False),
        ("*", "", False),
        (" *", "flights:book", False),
    ],
)
def test_permission_matches(pattern: str, permission: str, granted: bool) -> None:
    assert permission_matches(pattern, permission) is granted


@pytest.mark.parametrize(
    ("pattern", "permission"), [(None, "a"), ("*", None), (1, 1), (["*"], "a")]
)
def test_permission_matches_odd_input_grants_nothing(pattern: Any, permission: Any) -> None:
    assert permission_matches(pattern, permission) is False


def test_any_permission_matches() -> None:
    assert any_permission_matches(["hotels:*", "flights:book"], "flights:book")
    assert any_permission_matches(iter(["x", "flights:*"]), "flights:book")
    assert not any_permission_matches(["hotels:*", "flights:book"], "flights:cancel")
    assert not any_permission_matches([], "flights:book")
    assert any_permission_matches([None, 3, "*"], "flights:book")  # type: ignore[list-item]


def test_any_permission_matches_treats_a_lone_string_as_one_pattern() -> None:
    # Iterated as characters, "a*" would yield "*" and grant everything.
    assert not any_permission_matches("a*", "flights:book")
    assert any_permission_matches("flights:*", "flights:book")


@pytest.mark.parametrize("patterns", [None, 5, object()])
def test_any_permission_matches_odd_input_grants_nothing(patterns: Any) -> None:
    assert any_permission_matches(patterns, "flights:book") is False


def test_any_permission_matches_stops_granting_when_the_source_fails() -> None:
    def failing() -> Any:
        yield "hotels:*"
        raise RuntimeError("boom")

    assert any_permission_matches(failing(), "flights:book") is False
    assert any_permission_matches(failing(), "hotels:book") is True


# --- pattern_covers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "child", "covered"),
    [
        ("*", "*", True),
        ("*", "flights:*", True),
        ("*", "flights:book", True),
        ("flights:*", "flights:book", True),
        ("flights:*", "flights:*", True),
        ("flights:*", "flights:intl:*", True),
        ("flights:*", "*", False),
        ("flights:*", "flightsx:book", False),
        ("flights:*", "flightsx:*", False),
        ("flights:*", "hotels:*", False),
        ("flights:book", "flights:book", True),
        ("flights:book", "flights:*", False),
        ("flights:book", "*", False),
        ("flights:book", "flights:cancel", False),
        ("flights:intl:*", "flights:*", False),
        ("", "flights:book", False),
        ("flights:*", "", False),
        (None, "flights:book", False),
        ("*", None, False),
    ],
)
def test_pattern_covers(parent: Any, child: Any, covered: bool) -> None:
    assert pattern_covers(parent, child) is covered


PATTERNS = st.one_of(
    st.just("*"),
    st.text(alphabet="ab:*", min_size=1, max_size=5),
    st.text(alphabet="ab:", max_size=4).map(lambda ns: ns + ":*"),
)


def witnesses(pattern: str) -> list[str]:
    """Permissions ``pattern`` grants, including one no pattern over "ab:*" can name exactly."""
    if pattern == "*":
        return ["\x00", "a:\x00"]
    if pattern.endswith(":*"):
        return [pattern[:-1] + "\x00", pattern]
    return [pattern]


@settings(max_examples=200, deadline=None)
@given(parent=PATTERNS, child=PATTERNS)
def test_covers_is_exactly_grant_set_inclusion(parent: str, child: str) -> None:
    # Sound: nothing the child grants is refused by the parent. Complete: when not covered, some
    # permission the child grants is refused by the parent.
    child_grants = [p for p in witnesses(child) if permission_matches(child, p)]
    refused = [p for p in child_grants if not permission_matches(parent, p)]
    assert child_grants
    assert pattern_covers(parent, child) is (not refused)


# --- read_claims --------------------------------------------------------------------------------


def test_reads_every_claim_of_a_delegated_token() -> None:
    claims = read_claims(
        token(
            {
                "sub": "agt_flights",
                "permissions": ["flights:*", "hotels:book"],
                "exp": 1_900_000_000,
                "grant_id": "dlg_1",
                "acting_for": "besar",
                "delegation_chain": ["besar", "agt_travel", "agt_flights"],
                "delegated_permissions": ["flights:book"],
                "max_amount": 500,
            }
        )
    )
    assert claims == TokenClaims(
        permissions=("flights:*", "hotels:book"),
        exp=1_900_000_000.0,
        grant_id="dlg_1",
        acting_for="besar",
        delegation_chain=("besar", "agt_travel", "agt_flights"),
        delegated_permissions=("flights:book",),
        max_amount=500,
    )
    assert isinstance(claims.max_amount, int)


def test_absent_claims_are_empty() -> None:
    assert read_claims(token({})) == TokenClaims(
        permissions=(),
        exp=None,
        grant_id=None,
        acting_for=None,
        delegation_chain=(),
        delegated_permissions=(),
        max_amount=None,
    )


def test_a_single_string_permission_is_one_pattern() -> None:
    claims = read_claims(token({"permissions": "flights:*", "delegated_permissions": "a:b"}))
    assert claims is not None
    assert claims.permissions == ("flights:*",)
    assert claims.delegated_permissions == ("a:b",)


def test_claims_of_the_wrong_type_are_ignored_one_by_one() -> None:
    claims = read_claims(
        token(
            {
                "permissions": ["a:b", 1, None, "", ["x"], {"y": 1}, "c:*"],
                "exp": "1900000000",
                "grant_id": 7,
                "acting_for": "",
                "delegation_chain": {"root": "besar"},
                "delegated_permissions": [True, "d:e"],
                "max_amount": True,
            }
        )
    )
    assert claims == TokenClaims(
        permissions=("a:b", "c:*"),
        exp=None,
        grant_id=None,
        acting_for=None,
        delegation_chain=(),
        delegated_permissions=("d:e",),
        max_amount=None,
    )


@pytest.mark.parametrize(
    ("raw", "exp"),
    [
        (b'{"exp":1900000000.5}', 1_900_000_000.5),
        (b'{"exp":true}', None),
        (b'{"exp":NaN}', None),
        (b'{"exp":Infinity}', None),
        (b'{"exp":1' + b"0" * 400 + b"}", None),
        (b'{"exp":null}', None),
    ],
)
def test_exp_must_be_a_finite_number(raw: bytes, exp: float | None) -> None:
    claims = read_claims(handmade(raw))
    assert claims is not None
    assert claims.exp == exp


def test_max_amount_keeps_floats_and_drops_non_finite() -> None:
    assert read_claims(handmade(b'{"max_amount":12.5}')) == TokenClaims(max_amount=12.5)
    assert read_claims(handmade(b'{"max_amount":-Infinity}')) == TokenClaims()


def test_registered_claims_are_not_verified() -> None:
    # Expired, not yet valid, odd types: the caller decides what expiry means, not the reader.
    payload = {
        "permissions": ["x:y"],
        "exp": 1,
        "nbf": 4_000_000_000,
        "iat": "yesterday",
        "aud": "someone-else",
        "iss": 5,
        "sub": 5,
        "jti": 5,
    }
    claims = read_claims(handmade(json.dumps(payload).encode()))
    assert claims is not None
    assert claims.permissions == ("x:y",)
    assert claims.exp == 1.0


def test_signature_is_not_verified() -> None:
    good = token({"permissions": ["x:y"]})
    forged = good.rsplit(".", 1)[0] + "." + b64(b"forged")
    assert read_claims(forged) == TokenClaims(permissions=("x:y",))
    unsigned = jwt.encode({"permissions": ["x:y"]}, None, algorithm="none")
    assert read_claims(unsigned) == TokenClaims(permissions=("x:y",))


def test_surrounding_whitespace_is_tolerated() -> None:
    assert read_claims("  " + token({"grant_id": "g"}) + "\n") == TokenClaims(grant_id="g")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "a.b.c",
        "...",
        "not a token",
        "Bearer " + handmade(b'{"permissions":["*"]}'),
        handmade(b'["*"]'),
        handmade(b'"*"'),
        handmade(b"{not json"),
        handmade(b'{"permissions":["*"]}', header=b"[]"),
        handmade(b'{"permissions":["*"]}', header=b"{bad"),
        b64(b'{"alg":"HS256"}') + "." + b64(b'{"permissions":["*"]}'),
        "a.b.c.d.e",
        "\ud800.\udfff.x",
        None,
        42,
        handmade(b'{"permissions":["*"]}').encode(),
        ["a", "b"],
    ],
)
def test_anything_but_a_jwt_is_none(bad: Any) -> None:
    assert read_claims(bad) is None


def test_deeply_nested_payload_is_none_not_recursion_error() -> None:
    assert read_claims(handmade(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")) is None


@settings(max_examples=200, deadline=None)
@given(garbage=st.one_of(st.text(), st.binary(), st.text(alphabet="abcXYZ-_=.{}\"'", max_size=60)))
def test_garbage_never_raises_and_never_grants(garbage: Any) -> None:
    claims = read_claims(garbage)
    assert claims is None or claims.permissions == ()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
CLAIM_NAMES = st.sampled_from(
    [
        "permissions",
        "exp",
        "grant_id",
        "acting_for",
        "delegation_chain",
        "delegated_permissions",
        "max_amount",
        "x",
    ]
)


@settings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(CLAIM_NAMES, JSON, max_size=8))
def test_any_payload_yields_claims_of_the_declared_types(payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode()  # NaN and Infinity are written as JSON's extensions
    claims = read_claims(handmade(raw))
    assert claims is not None
    for strings in (claims.permissions, claims.delegation_chain, claims.delegated_permissions):
        assert all(isinstance(s, str) and s for s in strings)
    for text in (claims.grant_id, claims.acting_for):
        assert text is None or (isinstance(text, str) and text)
    assert claims.exp is None or (type(claims.exp) is float and math.isfinite(claims.exp))
    amount = claims.max_amount
    assert amount is None or (type(amount) in (int, float) and math.isfinite(amount))
    if isinstance(payload.get("permissions"), list):
        assert list(claims.permissions) == [
            p for p in payload["permissions"] if isinstance(p, str) and p
        ]


# --- TokenClaims.expired ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exp", "now", "leeway", "expired"),
    [
        (None, 1e12, 0, False),
        (100.0, 99.0, 0, False),
        (100.0, 100.0, 0, True),
        (100.0, 101.0, 0, True),
        (100.0, 101.0, 5, False),
        (100.0, 105.0, 5, True),
        (100.0, 70.0, -30, True),
        (100.0, 69.0, -30, False),
    ],
)
def test_expired(exp: float | None, now: float, leeway: float, expired: bool) -> None:
    assert TokenClaims(exp=exp).expired(now, leeway) is expired


# --- Import cost --------------------------------------------------------------------------------


def test_matching_does_not_import_pyjwt_until_a_token_is_read() -> None:
    # A fresh interpreter: the package, the module and its matching grammar, no PyJWT yet.
    script = (
        "import sys\n"
        "import tracengent._permissions as m\n"
        "assert m.permission_matches('a:*', 'a:b') and 'jwt' not in sys.modules\n"
        "m.read_claims('a.b.c'); assert 'jwt' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
