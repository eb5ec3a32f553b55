"""The platform a test runs against: its policy, and a note of which tool each decision was for.

The store keeps a tool decision's permission and context but not the tool's name (an unbound
tool has no permission at all), and "was `delete_file` denied?" is the question a test asks. So
the kit's platform reads the name from each tool-authorize request it answers, through the one
entry point every transport calls (`Platform.handle`), and keeps it by decision id.
"""

from __future__ import annotations

import gzip
import json
import os
import textwrap
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from tracengent.platform import (
    Platform,
    Policy,
    Reply,
    Store,
    default_policy,
    load_policy,
    parse_policy,
)

#: What chooses a test's policy: None (the built-in one), TOML text, a policy file, or a Policy.
PolicySource: TypeAlias = str | os.PathLike[str] | Policy | None

_TOOL_AUTHORIZE = "/v1/tool-authorize"


@dataclass(frozen=True)
class ToolRequest:
    """What a tool-authorize request named: the transport and the tool."""

    transport: str  # "mcp" | "function" | "http"
    #: the MCP tool or function name; for HTTP, "POST api.stripe.com/v1/refunds"
    name: str
    host: str | None = None

    def matches(self, tool: str) -> bool:
        """By name; an HTTP call also by its bare host."""
        return tool in (self.name, self.host)


def _tool_request(request: Mapping[str, Any]) -> ToolRequest | None:
    transport = request.get("transport")
    if transport == "mcp":
        name = request.get("toolName")
    elif transport == "function":
        name = request.get("functionName")
    elif transport == "http":
        host = request.get("host")
        method = str(request.get("method") or "").upper()
        name = f"{method} {host}{request.get('path') or '/'}".strip()
        return ToolRequest("http", name, host if isinstance(host, str) else None)
    else:
        return None
    return ToolRequest(transport, name) if isinstance(name, str) else None


class ObservedPlatform(Platform):
    """A `Platform` that remembers the tool behind each tool decision (`tool_requests`)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy, Store())
        self._lock = threading.Lock()
        self._tools: dict[str, ToolRequest] = {}

    def tool_request(self, decision_id: str) -> ToolRequest | None:
        with self._lock:
            return self._tools.get(decision_id)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        reply = super().handle(method, path, headers, body)
        if path == _TOOL_AUTHORIZE and reply.status == 200:
            self._remember(headers, body, reply.body)
        return reply

    def _remember(self, headers: Mapping[str, str], body: bytes, answer: bytes) -> None:
        try:
            encodings = {k.lower(): v for k, v in headers.items()}.get("content-encoding", "")
            raw = gzip.decompress(body) if encodings.lower() == "gzip" else body
            tool = _tool_request(json.loads(raw))
            decision_id = json.loads(answer).get("decisionId")
        except Exception:  # noqa: BLE001 - a note for tests must never break the platform
            return
        if tool is not None and isinstance(decision_id, str):
            with self._lock:
                self._tools[decision_id] = tool


def resolve_policy(source: PolicySource, base_dir: Path | None = None) -> Policy:
    """The `Policy` a source names; a relative file path is taken from `base_dir` (the test's).

    Raises `PolicyError` (every problem listed) for a policy that cannot be used.
    """
    if source is None:
        return default_policy()
    if isinstance(source, Policy):
        return source
    if isinstance(source, str):
        if "\n" not in source and "=" not in source and source.strip().endswith(".toml"):
            raise TypeError(
                f"{source!r} looks like a file name, but a str is the policy's TOML text: "
                "pass a pathlib.Path, or path=... to the tracengent_policy marker"
            )
        return parse_policy(textwrap.dedent(source), "<inline tracengent_policy>")
    if isinstance(source, os.PathLike):
        path = Path(source)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_policy(path)
    raise TypeError(
        f"a tracengent policy is TOML text, a path, a Policy or None, not {type(source).__name__}"
    )
