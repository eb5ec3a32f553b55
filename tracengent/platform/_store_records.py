"""What the store keeps, as records, and how a record becomes a row and back.

Columns of decisions, approvals and grants carry the names of the dataclass fields they hold,
so one `insert` and one `decode` serve every record; fields holding JSON (a context, a chain,
permissions) are stored as compact JSON text.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

_T = TypeVar("_T")
_JSON_FIELDS = frozenset({"context", "chain", "permissions"})
_TUPLE_FIELDS = frozenset({"chain", "permissions"})
_FRACTION = re.compile(r"\.(\d+)")


class NotTraceOwner(PermissionError):
    """A close of a trace another agent owns."""

    def __init__(self, trace_id: str) -> None:
        super().__init__(f"trace {trace_id} belongs to another agent")
        self.trace_id = trace_id


@dataclass(frozen=True)
class Approval:
    approval_id: str
    decision_id: str
    agent_id: str
    permission: str
    context: Any
    trace_id: str | None
    status: str  # "pending" | "approved" | "denied" | "expired" (pending past expires_at)
    created_at: float
    expires_at: float
    decided_at: float | None
    #: when an approved approval released its call (it releases one, once)
    released_at: float | None = None


@dataclass(frozen=True)
class Grant:
    grant_id: str
    parent_id: str | None
    agent_id: str  # the agent the grant is for
    acting_for: str
    chain: tuple[str, ...]
    permissions: tuple[str, ...]
    max_amount: float | None
    expires_at: float
    revoked: bool
    created_at: float


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: str
    kind: str  # "authorize" | "tool"
    agent_id: str
    trace_id: str | None
    permission: str | None
    status: str
    outcome: str | None
    reason: str
    context: Any
    approval_id: str | None
    acting_for: str | None
    chain: tuple[str, ...] | None
    created_at: float
    #: a tool decision's tool: the MCP tool or function name, or "METHOD host/path" for HTTP
    tool: str | None = None
    transport: str | None = None  # a tool decision's: "mcp" | "function" | "http"


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    agent_id: str
    root_request: str | None
    status: str | None  # None while the trace is open (no close yet)
    started_at: float
    ended_at: float | None
    event_count: int
    decision_count: int


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    kind: str  # "event" | "decision" | "approval" | "close"
    data: dict[str, Any]


def dump_json(value: Any) -> str:
    """Compact JSON that never raises: events were validated upstream, odd values become text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def parse_time(value: Any) -> float | None:
    """ISO-8601 to epoch seconds, or None; accepts `Z` and any fraction length even on 3.10."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # no offset: the wire speaks UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def insert(db: sqlite3.Connection, table: str, record: Any) -> None:
    """Inserts a dataclass into the table whose columns carry its field names."""
    row = {
        f.name: dump_json(v) if f.name in _JSON_FIELDS and v is not None else v
        for f in fields(record)
        for v in [getattr(record, f.name)]
    }
    marks = ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", tuple(row.values()))


def decode(cls: type[_T], row: sqlite3.Row) -> _T:
    values: dict[str, Any] = {}
    for f in fields(cast(Any, cls)):
        value = row[f.name]
        if f.name in _JSON_FIELDS and value is not None:
            value = json.loads(value)
            value = tuple(value) if f.name in _TUPLE_FIELDS else value
        values[f.name] = bool(value) if f.name == "revoked" else value
    return cast(Callable[..., _T], cls)(**values)
