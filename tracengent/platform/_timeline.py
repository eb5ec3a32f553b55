"""Plain-text views of the platform's state, for the CLI: a trace's timeline, traces, approvals.

Kept apart from the CLI so rendering is a pure function of what the store returns: testable
without argparse or a terminal. The store keeps events exactly as SDKs sent them (any language,
any version, fields it does not know), so every field is read defensively: a missing or oddly
typed field is shown as absent, never a crash. Every entry is one line (newlines in names and
messages are folded), so the output can be grepped and diffed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._store import Approval, Store, TimelineEntry, TraceSummary
from ._wire import AGENT_ID, DURATION_MS, ESTIMATED_TOKENS, RESERVATION_ID, ROOT_REQUEST

#: a trace's token reservations by decision id: (reserved, used or None while open, state)
Reservations = Mapping[str, tuple[int, int | None, str]]

OK, FAILED = "✓", "✗"
_MAX_TEXT = 200  # longer names, reasons and messages are cut: one entry stays one readable line
_WHITESPACE = re.compile(r"\s+")


# --- defensive field access ----------------------------------------------------------------------


def _field(data: Any, *path: str) -> Any:
    """`data[path[0]][path[1]]…`, or None as soon as a step is missing or not a mapping."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    """A finite number, or None: a stored integer past a double's range (an older platform
    stored those) or a NaN shows as absent rather than crashing the CLI."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    """Any value as one line of at most `limit` characters ("" for None)."""
    if value is None:
        return ""
    text = _WHITESPACE.sub(" ", value if isinstance(value, str) else str(value)).strip()
    text = "".join(ch if ch.isprintable() else "?" for ch in text)  # no escapes reach the terminal
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quoted(value: Any) -> str:
    text = _text(value)
    return f'"{text}"' if text else ""


def format_amount(amount: Any, currency: Any = None) -> str:
    """`400 EUR`, `0.0042 USD`: all significant digits (money must not be rounded to 6 places)."""
    number = _number(amount)
    if number is None:
        return ""
    shown = f"{number:.15g}"
    unit = _text(currency, 12)
    return f"{shown} {unit}" if unit else shown


def _money(value: Any) -> str:
    return format_amount(_field(value, "amount"), _field(value, "currency"))


def _duration_ms(value: Any) -> str:
    ms = _number(value)
    return "" if ms is None else f"{ms:.0f} ms"


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def _local_time(epoch: Any) -> str:
    number = _number(epoch)
    if number is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(number))


def _join(*parts: str) -> str:
    return "  ".join(part for part in parts if part)


def _table(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows padded into columns two spaces apart; the last column is left ragged."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


# --- one trace -----------------------------------------------------------------------------------


def _mark(event: Mapping[str, Any]) -> str:
    status = event.get("status")
    if status in ("failure", "failed", "error"):
        return FAILED
    return OK if status in ("success", "completed", None) else _text(status, 20)


def _error_message(event: Mapping[str, Any]) -> str:
    """A failed call's message: the wire puts it in `output.error`; other SDKs may not."""
    message = _field(event, "output", "error")
    if message is None and isinstance(event.get("output"), str):
        message = event.get("output")
    return f"error: {_text(message)}" if message is not None else ""


def _outcome(event: Mapping[str, Any]) -> str:
    """Mark, name, and on failure the error — shared by tool calls, LLM calls and actions."""
    mark = _mark(event)
    message = _error_message(event) if mark == FAILED else ""
    return _join(f"{mark} {_text(event.get('name')) or '(unnamed)'}", message)


def _tokens(event: Mapping[str, Any], reservations: Reservations) -> str:
    """Used tokens; for a call that names its reservation, reserved vs used (the ledger's)."""
    tokens = _number(_field(event, "usage", "tokens"))
    used = "" if tokens is None else f"{tokens:.0f} tokens"
    named = _field(event, "attributes", RESERVATION_ID)
    found = reservations.get(named) if isinstance(named, str) else None
    if found is None:
        return used
    reserved, counted, state = found
    if counted is None:
        return _join(used, f"{reserved} reserved, open")
    released = " (released)" if state == "released" else ""
    return f"{counted} tokens of {reserved} reserved{released}"


def _model(event: Mapping[str, Any]) -> str:
    model = _text(_field(event, "usage", "model"), 60)
    return f"model {model}" if model else ""


def _event_line(event: Mapping[str, Any], reservations: Reservations) -> tuple[str, str]:
    kind = event.get("type")
    if kind == "decision":
        return "step", _text(event.get("name")) or "(unnamed step)"
    if kind == "tool_call":
        return "tool", _join(_outcome(event), _duration_ms(event.get(DURATION_MS)))
    if kind == "llm_call":
        details = (_tokens(event, reservations), _model(event), _money(event.get("cost")))
        return "llm", _join(_outcome(event), *details, _duration_ms(event.get(DURATION_MS)))
    if kind == "action":
        cost = _money(event.get("cost"))
        return "action", _join(_outcome(event), cost, _duration_ms(event.get(DURATION_MS)))
    # Anything else (error, lifecycle, a type from a newer SDK) is shown by what every event has.
    label = _text(kind, 16) or "event"
    status = _text(event.get("status"), 20)
    message = _error_message(event) if _mark(event) == FAILED else ""
    name = _text(event.get("name")) or "(unnamed)"
    return label, _join(name, status, message, _duration_ms(event.get(DURATION_MS)))


def _context_details(context: Any) -> str:
    amount = format_amount(_field(context, "amount"), _field(context, "currency"))
    tokens = _number(_field(context, ESTIMATED_TOKENS))
    return _join(amount, "" if tokens is None else f"est. {tokens:.0f} tokens")


def _subject(decision: Mapping[str, Any]) -> str:
    """What was decided on: a tool decision's tool, then the permission it is bound to.

    An unbound tool has no permission; a record from before tools were stored has no tool.
    """
    permission = _text(decision.get("permission"), 120)
    tool = _text(decision.get("tool"), 120) if decision.get("kind") == "tool" else ""
    if tool:
        return f"{tool} ({permission})" if permission else tool
    return permission or "(no permission)"


def _decision_line(decision: Mapping[str, Any]) -> tuple[str, str]:
    label = "tool-authz" if decision.get("kind") == "tool" else "authz"
    status = _text(decision.get("status"), 30) or "?"
    outcome = _text(decision.get("outcome"), 30)
    verdict = f"→ {status}" + (f" [{outcome}]" if outcome else "")
    acting_for = _text(decision.get("acting_for"), 60)
    approval = _text(decision.get("approval_id"), 60)
    body = _join(
        _subject(decision),
        _context_details(decision.get("context")),
        verdict,
        _quoted(decision.get("reason")),
        f"for {acting_for}" if acting_for else "",
        _text(decision.get("decision_id"), 60),
        f"approval {approval}" if approval else "",
    )
    return label, body


def _approval_line(approval: Mapping[str, Any], relative: Callable[[Any], str]) -> tuple[str, str]:
    status = _text(approval.get("status"), 20) or "?"
    when = ""
    if approval.get("decided_at") is not None:
        when = f"decided at {relative(approval.get('decided_at'))}"
    elif status == "pending":
        when = f"expires at {relative(approval.get('expires_at'))}"
    body = _join(
        _text(approval.get("approval_id"), 60) or "(no id)",
        status,
        _text(approval.get("permission"), 120),
        _context_details(approval.get("context")),
        when,
    )
    return "approval", body


def _close_line(close: Mapping[str, Any]) -> tuple[str, str]:
    return "close", _join(_text(close.get("status"), 30) or "?", _quoted(close.get("summary")))


def _first(entries: Sequence[TimelineEntry], *keys: str) -> str:
    """The first non-empty value under any of `keys`, across entries in time order."""
    for entry in entries:
        for key in keys:
            value = entry.data.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def render_timeline(store: Store, trace_id: str) -> str:
    """One trace as text: a header line, then one line per event, decision, approval and close.

    Times are relative to the trace's first entry. Raises `KeyError(trace_id)` when the store
    knows nothing about the trace: an empty timeline would read as "nothing happened", which is
    a different statement from "no such trace".
    """
    entries = store.timeline(trace_id)
    if not entries:
        raise KeyError(trace_id)
    start = min(entry.at for entry in entries)
    end = max(entry.at for entry in entries)

    def relative(at: Any) -> str:
        number = _number(at)
        return "?" if number is None else "+" + _seconds(number - start)

    closes = [entry for entry in entries if entry.kind == "close"]
    status = _text(closes[-1].data.get("status"), 30) if closes else ""
    header = _join(
        f"trace {_text(trace_id, 120)}",
        f"agent {_text(_first(entries, AGENT_ID, 'agent_id'), 120) or '?'}",
        f"root {_quoted(_first(entries, ROOT_REQUEST)) or '-'}",
        f"duration {_seconds(end - start)}",
        f"status {status or ('closed' if closes else 'open')}",
    )
    reservations = store.reservations(trace_id)
    rows: list[tuple[str, str, str]] = []
    for entry in entries:
        if entry.kind == "event":
            label, body = _event_line(entry.data, reservations)
        elif entry.kind == "decision":
            label, body = _decision_line(entry.data)
        elif entry.kind == "approval":
            label, body = _approval_line(entry.data, relative)
        elif entry.kind == "close":
            label, body = _close_line(entry.data)
        else:  # a kind this renderer predates: still one line, never dropped
            label, body = _text(entry.kind, 16) or "entry", _text(entry.data)
        rows.append((relative(entry.at), label, body))
    return "\n".join([header, *_table(rows, right=frozenset({0}))])


# --- lists ---------------------------------------------------------------------------------------


def render_traces(summaries: Sequence[TraceSummary]) -> str:
    """Traces as a table (newest first, as given), or a line saying there are none."""
    if not summaries:
        return "no traces"
    rows = [["TRACE", "STARTED", "DURATION", "STATUS", "AGENT", "EVENTS", "DECISIONS", "ROOT"]]
    for s in summaries:
        duration = "-" if s.ended_at is None else _seconds(max(0.0, s.ended_at - s.started_at))
        rows.append(
            [
                _text(s.trace_id, 80),
                _local_time(s.started_at),
                duration,
                _text(s.status, 20) or "open",
                _text(s.agent_id, 60) or "?",
                str(s.event_count),
                str(s.decision_count),
                _quoted(s.root_request) or "-",
            ]
        )
    return "\n".join(_table(rows, right=frozenset({2, 5, 6})))


def render_approvals(approvals: Sequence[Approval], *, empty: str = "no approvals") -> str:
    """Approvals as a table, or `empty` when there are none."""
    if not approvals:
        return empty
    rows = [["APPROVAL", "STATUS", "AGENT", "PERMISSION", "AMOUNT", "TRACE", "CREATED", "EXPIRES"]]
    for a in approvals:
        rows.append(
            [
                _text(a.approval_id, 60),
                _text(a.status, 20),
                _text(a.agent_id, 60),
                _text(a.permission, 120),
                _context_details(a.context) or "-",
                _text(a.trace_id, 80) or "-",
                _local_time(a.created_at),
                _local_time(a.expires_at),
            ]
        )
    return "\n".join(_table(rows))
