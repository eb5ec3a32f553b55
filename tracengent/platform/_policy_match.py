"""How a policy's patterns meet a request: hosts, methods, paths and permission patterns.

Pure functions over strings, shared by the lookups of a loaded ``Policy`` and by the checks
that read a policy file, so that a pattern is accepted at start exactly when it can match later.
Matching errs towards governing: a request path is matched in the form a server would route it
by (``normalize_request_path``), so ``/V1//refunds/``, ``/v1/refunds;jsessionid=1`` or
``/v1/x/../%72efunds`` cannot slip past a ``/v1/refunds`` binding; a ``HEAD`` meets a ``GET``
binding, as servers answer HEAD with the GET handler.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

from .._grammar.permissions import permission_matches

__all__ = [
    "HOST_NAME",
    "clean_segments",
    "host_matches",
    "host_pattern_covers",
    "http_rank",
    "limit_rank",
    "method_rank",
    "normalize_host",
    "normalize_host_pattern",
    "normalize_request_path",
    "path_regex",
    "patterns_overlap",
    "permission_matches",
]

HOST_NAME: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
#: rounds of percent-decoding a path gets: enough for double and triple encoding
_MAX_DECODES: Final = 3


# --- hosts ------------------------------------------------------------------------------------


def normalize_host(host: str) -> str | None:
    """``host`` lowercased, without port, brackets or a trailing dot; None if not a host."""
    if not isinstance(host, str):
        return None
    text = host.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.removesuffix(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    return text if HOST_NAME.fullmatch(text) else None


def normalize_host_pattern(pattern: str) -> str | None:
    """A host pattern in canonical form, or None when it is not one (a port is refused)."""
    text = pattern.strip().lower()
    if text.startswith("*."):
        rest = text[2:].removesuffix(".")
        return f"*.{rest}" if HOST_NAME.fullmatch(rest) else None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.removesuffix(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    return text if HOST_NAME.fullmatch(text) else None


def host_matches(pattern: str, host: str) -> bool:
    """``host`` (already normalised) against a host pattern."""
    clean = normalize_host_pattern(pattern)
    if clean is None:
        return False
    if clean.startswith("*."):
        suffix = clean[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == clean


def host_pattern_covers(allowed: str, pattern: str) -> bool:
    """True if every host ``pattern`` matches is matched by ``allowed`` too (both canonical)."""
    if allowed.startswith("*."):
        suffix = allowed[1:]
        return pattern.endswith(suffix) and (len(pattern) > len(suffix) or pattern == allowed)
    return pattern == allowed


# --- methods and paths ------------------------------------------------------------------------


def method_rank(bound: str | None, method: str) -> int | None:
    """How well a binding's method fits the request's (higher is closer); None: it does not."""
    if bound is None:
        return 0
    clean = bound.strip().upper()
    if clean == method:
        return 2
    if clean == "GET" and method == "HEAD":
        return 1
    return None


def http_rank(host: str | None, path: str | None) -> tuple[int, ...]:
    """How specific an HTTP binding is: an exact host over a wildcard one (a longer suffix over
    a shorter), then a path without wildcards over a glob (more literal characters over fewer)
    over no path. The method's rank comes after this one."""
    host = host or ""
    if path is None:
        path_rank = (0, 0, 0)
    else:
        path_rank = (1, 0 if "*" in path else 1, len(path.replace("*", "")))
    return (0 if host.startswith("*.") else 1, len(host), *path_rank)


def normalize_request_path(path: str) -> str:
    """The path as servers route it, for matching only (the SDK still sends its own bytes).

    Each step is one some common server takes, so a spelling it routes to a bound handler
    matches that binding: no query or fragment; percent-decoded, and again while that changes
    something (double-encoding, up to three rounds); ``\\`` read as ``/`` (IIS, URL parsers);
    cut at a NUL; a segment's ``;params`` dropped (Tomcat, Spring, Jetty; so ``..;`` is
    ``..``); empty and ``.`` segments dropped, ``..`` resolved; and lowercased, as
    case-insensitive routers and file systems see it.
    """
    text = re.split(r"[?#]", path, maxsplit=1)[0]
    for _ in range(_MAX_DECODES):
        decoded = re.split(r"[?#]", unquote(text), maxsplit=1)[0]
        if decoded == text:
            break
        text = decoded
    text = text.replace("\\", "/").split("\x00", 1)[0]
    segments = [segment.split(";", 1)[0] for segment in text.split("/")]
    return _resolve_dots("/".join(segments)).lower()


def clean_segments(path: str) -> str:
    """``path`` with a leading "/", without empty segments ("//") or a trailing "/"."""
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def _resolve_dots(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


@lru_cache(maxsize=512)
def path_regex(pattern: str) -> re.Pattern[str]:
    """The regex for a path glob: ``*`` within one segment, ``**`` (or more) across segments."""
    parts = re.split(r"(\*+)", clean_segments(pattern).lower())
    regex = "".join(
        ("[^/]*" if part == "*" else ".*") if part.startswith("*") else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


# --- permission patterns ----------------------------------------------------------------------


def patterns_overlap(first: str, second: str) -> bool:
    """True if some permission is granted by both patterns.

    With exact names, ``ns:*`` and ``*`` only, that is when one grants the other read as a
    name: a limit on ``payments:*`` concerns an agent holding ``payments:refund`` and vice
    versa, and ``a:*`` overlaps ``a:b:*``.
    """
    return permission_matches(first, second) or permission_matches(second, first)


def limit_rank(pattern: str, permission: str) -> tuple[int, int]:
    """How specific a matching limit's pattern is: exact, then the longer ``ns:*``, then ``*``."""
    if pattern == permission:
        return (2, len(pattern))
    if pattern == "*":
        return (0, 0)
    return (1, len(pattern))
