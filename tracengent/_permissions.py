"""Permission patterns and the token claims the SDK reads, without trusting either.

The matcher is the platform's own (``_grammar.permissions``), so a local ``has_permission``
hint agrees with an authorize answer: ``*`` grants everything, an exact name grants itself, and
``ns:*`` grants every permission starting with ``ns:``. Nothing here is a security decision — the platform decides —
so every function answers instead of raising, and odd input simply grants nothing.

Claims are read without verifying the signature (the SDK does not hold the key): they only drive
hints such as "refresh before expiry" and "what may this delegated token attenuate to".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._grammar.permissions import any_permission_matches, pattern_covers, permission_matches

__all__ = [
    "TokenClaims",
    "any_permission_matches",
    "pattern_covers",
    "permission_matches",
    "read_claims",
]


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
