"""The local Tracengent platform: the whole wire contract, decided by a policy file.

An optional extra (`pip install "tracengent[platform]"`); the SDK core never imports it except
when a client is pointed at `base_url="local"`. One implementation, two ways to run it:
embedded (an httpx transport, no port) and served (`tracengent dev`, ASGI under uvicorn).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ._asgi import PlatformApp
from ._decide import covers_all
from ._embedded import EmbeddedTransport
from ._engine import Platform
from ._policy import (
    DEFAULT_POLICY_TOML,
    Policy,
    PolicyError,
    default_policy,
    load_policy,
    parse_policy,
)
from ._requests import Reply
from ._store import Approval, DecisionRecord, Store, TraceSummary
from ._timeline import format_amount, render_approvals, render_timeline, render_traces

__all__ = [
    "DEFAULT_POLICY_TOML",
    "Approval",
    "DecisionRecord",
    "EmbeddedTransport",
    "Platform",
    "PlatformApp",
    "Policy",
    "PolicyError",
    "Reply",
    "Store",
    "TraceSummary",
    "covers_all",
    "default_data_dir",
    "default_policy",
    "embedded_platform",
    "embedded_transport",
    "format_amount",
    "load_policy",
    "open_platform",
    "parse_policy",
    "render_approvals",
    "render_timeline",
    "render_traces",
    "use_embedded_platform",
]

MEMORY = ":memory:"


def default_data_dir() -> Path:
    """Where the platform keeps its SQLite file: $TRACENGENT_DATA, else ~/.tracengent."""
    return Path(os.environ.get("TRACENGENT_DATA") or Path.home() / ".tracengent")


def open_platform(
    policy_file: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Platform:
    """A platform over a policy file (default: the built-in demo policy) and a data dir.

    `data_dir=":memory:"` keeps everything in memory (tests).
    """
    policy = default_policy() if policy_file is None else load_policy(policy_file)
    where = default_data_dir() if data_dir is None else data_dir
    store = Store() if str(where) == MEMORY else Store.in_data_dir(where)
    return Platform(policy, store)


_lock = threading.Lock()
_embedded: Platform | None = None


def embedded_platform() -> Platform:
    """The process-wide embedded platform, opened on first use.

    Configured by $TRACENGENT_POLICY (a policy file; default: the built-in one) and
    $TRACENGENT_DATA (a data dir, or ":memory:"; default ~/.tracengent).
    """
    global _embedded
    with _lock:
        if _embedded is None:
            _embedded = open_platform(os.environ.get("TRACENGENT_POLICY") or None)
        return _embedded


def use_embedded_platform(platform: Platform | None) -> Platform | None:
    """Make `platform` the one `base_url="local"` clients talk to; returns the previous one."""
    global _embedded
    with _lock:
        previous, _embedded = _embedded, platform
        return previous


def embedded_transport() -> EmbeddedTransport:
    return EmbeddedTransport(embedded_platform())
