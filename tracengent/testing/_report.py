"""Failure messages that explain themselves: what was expected, what was found, the timeline.

A failing governance test is read by someone who did not write the agent, often in CI output
only; the trace's timeline (the same text `tracengent traces show` prints) answers "what did the
agent actually do" without a debugger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tracengent.platform import DecisionRecord, Store, format_amount, render_timeline

_MAX_TIMELINES = 5  # a test that ran more traces than this has bigger problems to show first
_INDENT = "    "
_STILL_PENDING = ("pending", "pending_approval")


def indent(lines: Iterable[str]) -> str:
    return "\n".join(_INDENT + line for line in lines)


def decision_line(decision: DecisionRecord, verdict: str) -> str:
    """One decision: what it was on (a tool decision's tool, then its permission), how it ended,
    why, and in which trace."""
    tool = decision.tool if decision.kind == "tool" else None
    subject = tool or decision.permission or "(no permission)"
    if tool and decision.permission:
        subject += f" ({decision.permission})"
    same = verdict == decision.status or (verdict, decision.status) == _STILL_PENDING
    ended = decision.status if same else f"{decision.status} → {verdict}"
    context = decision.context if isinstance(decision.context, dict) else {}
    money = format_amount(context.get("amount"), context.get("currency"))
    where = f"trace {decision.trace_id}" if decision.trace_id else "outside any trace"
    parts = [
        decision.decision_id,
        decision.kind,
        subject,
        money,
        ended,
        repr(decision.reason),
        where,
    ]
    return "  ".join(part for part in parts if part)


def timelines(store: Store, trace_ids: Sequence[str]) -> str:
    """The timelines of `trace_ids` (the most recent few), or a line saying there is none."""
    if not trace_ids:
        return "timeline: no trace was recorded"
    shown = list(dict.fromkeys(trace_ids))[-_MAX_TIMELINES:]
    blocks = []
    for trace_id in shown:
        try:
            text = render_timeline(store, trace_id)
        except KeyError:
            text = f"trace {trace_id}: nothing recorded"
        blocks.append(indent(text.splitlines()))
    hidden = len(set(trace_ids)) - len(shown)
    more = [f"({hidden} earlier trace{'s' if hidden > 1 else ''} not shown)"] if hidden else []
    title = "timeline:" if len(shown) == 1 else "timelines:"
    return "\n\n".join([title, *blocks, *more]).replace(":\n\n", ":\n", 1)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def failure(expected: str, found: str, details: Sequence[str], context: str) -> AssertionError:
    """The AssertionError a check raises; `details` are one line each, shown under `found`."""
    lines = [f"expected: {expected}", f"found:    {found}"]
    if details:
        lines.append(indent(details))
    return AssertionError("\n".join([*lines, "", context]))
