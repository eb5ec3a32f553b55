"""Which HTTP headers (and query parameters) carry credentials: one rule, for every place
that must not pass them on.

The egress gate tells the platform about each request it is asked to send; the tracking
transport records requests as events; the secret scrubber cleans texts. None of them may carry
the agent's own credentials onward, and the agent's code names its headers however its APIs
want (``X-Api-Key``, ``Private-Token``, ``X-Amz-Security-Token``, …), so a list of three names is
not enough. The rule, as `is_credential_header` applies it:

A header is a credential when its **name** is ``Authorization``, ``Proxy-Authorization``,
``Cookie`` or ``Set-Cookie``, or contains (in any case) one of ``token``, ``secret``, ``key``,
``auth``, ``session``, ``passw``, ``signature``, ``credential``, ``cookie``, ``csrf``, ``xsrf``,
``bearer`` or ``jwt``, or has one of ``sig``, ``sid``, ``pass``, ``pwd``, ``otp`` as a word of
its own (``X-Sig``, ``pass``); or when its **value** looks like one, whatever the name: an
authorization scheme followed by a parameter (``Bearer …``, ``Basic …``, ``Digest …``,
``Token …``, ``AWS4-HMAC-SHA256 …``), a JWT (``eyJ….….``), a well-known key format (``sk-…``,
``sk_live_…``, ``agk_…``/``ags_…``, ``ghp_…``, ``glpat-…``, ``xoxb-…``, ``AKIA…``, ``AIza…``,
``ya29.…``), or a long opaque token (32 or more letters, digits and ``+/=_-.~:`` with at least
one letter and one digit and no space: API keys, hex secrets, UUID-like session ids).

The rule errs towards hiding: a request id or a trace header may be taken for a credential.
That costs nothing where it is used (the platform decides nothing on header values), while a
credential taken for an ordinary header would leak.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "JWT",
    "KEY_FORMATS",
    "is_credential_header",
    "is_credential_name",
    "looks_like_credential",
]

_NAMES: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_NAME_PARTS: Final = (
    "token",
    "secret",
    "key",
    "auth",
    "session",
    "passw",
    "signature",
    "credential",
    "cookie",
    "csrf",
    "xsrf",
    "bearer",
    "jwt",
)
_NAME_WORDS: Final = frozenset({"sig", "sid", "pass", "pwd", "otp"})
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")

_SCHEME: Final = re.compile(
    r"(?i)^\s*(?:bearer|basic|digest|token|negotiate|ntlm|hawk|oauth|mac|dpop|apikey|sharedkey"
    r"|sharedaccesssignature|aws4-hmac-sha256|aws|goog4-hmac-sha256)\s+\S"
)
JWT: Final = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.")
KEY_FORMATS: Final = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:agk|ags)_[A-Za-z0-9_\-]+"
    r"|(?:sk|rk)[-_][A-Za-z0-9_\-]{4,}"
    r"|(?:ghp|gho|ghs|ghu|ghr|github_pat)_[A-Za-z0-9_]{8,}"
    r"|glpat-[A-Za-z0-9_\-]{8,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{8,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{20,}"
    r"|ya29\.[0-9A-Za-z_\-]{8,}"
    r"|(?:npm|hf|shpat|shpss|pypi)[-_][A-Za-z0-9_\-]{16,}"
    r")"
)
_OPAQUE: Final = re.compile(r"[A-Za-z0-9+/=_\-.~:]{32,}")
_LETTER: Final = re.compile(r"[A-Za-z]")
_DIGIT: Final = re.compile(r"[0-9]")


def is_credential_name(name: str) -> bool:
    """True when a header (or parameter) of this name carries a credential by its name alone."""
    lowered = name.strip().lower()
    if lowered in _NAMES or any(part in lowered for part in _NAME_PARTS):
        return True
    return any(word in _NAME_WORDS for word in _WORD_SPLIT.split(lowered))


def looks_like_credential(value: str) -> bool:
    """True when a value has the shape of a credential, whatever it is called."""
    if _SCHEME.match(value) or JWT.search(value) or KEY_FORMATS.search(value):
        return True
    text = value.strip()
    return bool(
        _OPAQUE.fullmatch(text) and _LETTER.search(text) is not None and _DIGIT.search(text)
    )


def is_credential_header(name: str, value: str) -> bool:
    """True when the header ``name: value`` must not be passed on (see the module's rule)."""
    return is_credential_name(name) or looks_like_credential(value)
