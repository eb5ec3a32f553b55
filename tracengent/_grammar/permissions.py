"""The permission pattern grammar shared by the SDK's hints and the platform's decisions.

``*`` grants everything, an exact name grants itself, and ``ns:*`` grants every permission
starting with ``ns:``. One matcher, so a local ``has_permission`` hint cannot disagree with the
platform's answer. Every function answers instead of raising: odd input grants nothing. A leaf:
it imports nothing of tracengent.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["any_permission_matches", "pattern_covers", "permission_matches"]


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
