"""Permission patterns and the token claims the SDK reads, without trusting either.

The matcher mirrors the platform's, so a local ``has_permission`` hint agrees with
``/authorize``: ``*`` grants everything, an exact name grants itself, and ``ns:*`` grants every
permission starting with ``ns:``. Nothing here is a security decision — the platform decides —
so every function answers instead of raising, and odd input simply grants nothing.

Claims are read without verifying the signature (the SDK does not hold the key): they only drive
hints such as "refresh before expiry" and "what may this delegated token attenuate to".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TokenClaims",
    "any_permission_matches",
    "pattern_covers",
    "permission_matches",
    "read_claims",
]


def permission_matches(pattern: str, permission: str) -> bool:
    """True if the granted ``pattern`` grants the requested ``permission``."""
    if not isinstance(pattern, str) or not isinstance(permission, str) or not permission:
        return False
    if pattern == "*" or pattern == permission:
        return True
    # "ns:*" grants what starts with "ns:" — the colon is kept so "flightsx:book" is not granted.
    return pattern.endswith(":*") and permission.startswith(pattern[:-1])


def any_permission_matches(patterns: Iterable[str], permission: str) -> bool:
    """True if any of ``patterns`` grants ``permission``.

    A lone string is one pattern, as in a token's ``permissions`` claim — iterating it would
    yield characters, and a stray ``*`` among them would grant everything.
    """
    if isinstance(patterns, str):
        return permission_matches(patterns, permission)
    try:
        return any(permission_matches(pattern, permission) for pattern in patterns)
    except Exception:  # noqa: BLE001 - not iterable, or failed: unread grants nothing
        return False


def pattern_covers(parent_pattern: str, child_pattern: str) -> bool:
    """True if every permission ``child_pattern`` grants is also granted by ``parent_pattern``.

    This is the platform's attenuation check (a child token may only narrow its parent), so the
    SDK can refuse a widening request before it costs a round trip.
    """
    if not isinstance(child_pattern, str) or not child_pattern:
        return False
    if child_pattern == "*":
        return parent_pattern == "*"
    if child_pattern.endswith(":*"):
        # A namespace is covered by "*", by itself, or by an enclosing namespace ("a:*" ⊇ "a:b:*").
        return parent_pattern == "*" or (
            isinstance(parent_pattern, str)
            and parent_pattern.endswith(":*")
            and child_pattern.startswith(parent_pattern[:-1])
        )
    return permission_matches(parent_pattern, child_pattern)


@dataclass(frozen=True)
class TokenClaims:
    """The claims of an access or delegated token, each kept only if it has a usable type.

    A claim of the wrong type is treated as absent rather than rejecting the token: one odd
    claim must not hide the others. Empty strings count as absent too.
    """

    permissions: tuple[str, ...] = ()
    exp: float | None = None
    grant_id: str | None = None
    acting_for: str | None = None
    delegation_chain: tuple[str, ...] = ()
    delegated_permissions: tuple[str, ...] = ()
    max_amount: float | int | None = None

    def expired(self, now: float, leeway: float = 0) -> bool:
        """True once ``now`` is at or past ``exp`` (seconds since the epoch), as PyJWT counts it.

        ``leeway`` forgives clock skew by extending the token's life; pass a negative leeway to
        treat a token as expired early, e.g. to refresh it before the platform would refuse it.
        A token without a usable ``exp`` never expires here; the platform's 401 still will.
        """
        return self.exp is not None and self.exp <= now - leeway


def read_claims(token: str) -> TokenClaims | None:
    """The claims of ``token``, unverified; None when it is not a decodable JWT. Never raises."""
    if not isinstance(token, str) or not token.strip():
        return None
    try:
        # Deferred: only token handling needs PyJWT (~5 ms after httpx, ~60 ms on its own, and
        # it pulls in `cryptography` wherever that is installed); matching needs none of it.
        import jwt

        # Signature and every registered-claim check off: only the payload's shape matters here.
        payload = jwt.decode(
            token.strip(),
            options={
                "verify_signature": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
        if not isinstance(payload, dict):
            return None
        return TokenClaims(
            permissions=_strings(payload.get("permissions")),
            exp=_as_float(_number(payload.get("exp"))),
            grant_id=_string(payload.get("grant_id")),
            acting_for=_string(payload.get("acting_for")),
            delegation_chain=_strings(payload.get("delegation_chain")),
            delegated_permissions=_strings(payload.get("delegated_permissions")),
            max_amount=_number(payload.get("max_amount")),
        )
    except Exception:  # noqa: BLE001 - anything but a well-formed JWT
        return None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> tuple[str, ...]:
    # The platform sends one pattern as a bare string and several as an array.
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str) and item)
    return ()


def _number(value: Any) -> float | int | None:
    # bool is an int to Python but never an amount or a time to JSON.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _as_float(value: float | int | None) -> float | None:
    try:
        return None if value is None else float(value)
    except OverflowError:  # an int past float range: no time anyone will reach
        return None
