"""Assertions on what the platform decided and recorded; a failure shows the trace's timeline.

"All, and at least one": `assert_tool_denied("delete_file")` passes when the tool was gated and
every gating decision on it (in the trace, if given) ended denied. An agent that got one call
through is exactly what such a test exists to catch, so a mixed record fails and lists each call.
A decision that waited for a person counts as how the person decided (`verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tracengent.platform import DecisionRecord, format_amount

from ._reader import GatedToolCall, _Reader
from ._report import decision_line, failure, plural, timelines

_MAX_DETAILS = 30


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _at(event: Mapping[str, Any], key: str, inner: str) -> Any:
    value = event.get(key)
    return value.get(inner) if isinstance(value, Mapping) else None


def _scope(trace_id: str | None) -> str:
    return f" in trace {trace_id}" if trace_id else ""


def _event_line(event: Mapping[str, Any]) -> str:
    parts = [str(event.get("type")), repr(event.get("name")), str(event.get("status") or "-")]
    return "  ".join(parts)


class _Checks(_Reader):
    """The assertions of `PlatformRecorder`."""

    def assert_tool_denied(self, tool: str, trace_id: str | None = None) -> list[GatedToolCall]:
        """Assert `tool` was gated and denied: the platform refused every call of it."""
        __tracebackhide__ = True
        return self._check_tool(tool, trace_id, "denied")

    def assert_tool_allowed(self, tool: str, trace_id: str | None = None) -> list[GatedToolCall]:
        """Assert `tool` was gated and allowed (directly, or by an approval) every time."""
        __tracebackhide__ = True
        return self._check_tool(tool, trace_id, "allowed")

    def assert_authorized(
        self, permission: str, trace_id: str | None = None
    ) -> list[DecisionRecord]:
        """Assert every decision on `permission` (authorize calls and tool calls bound to it)
        ended allowed, and there was at least one."""
        __tracebackhide__ = True
        return self._check_permission(permission, trace_id, "allowed")

    def assert_denied(self, permission: str, trace_id: str | None = None) -> list[DecisionRecord]:
        """Assert every decision on `permission` ended denied, and there was at least one."""
        __tracebackhide__ = True
        return self._check_permission(permission, trace_id, "denied")

    def assert_event(
        self,
        trace_id: str,
        type: str | None = None,
        name: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Assert the trace recorded an event with this type, name and status; returns matches."""
        __tracebackhide__ = True
        events = self.events(trace_id)
        matches = [
            event
            for event in events
            if all(
                wanted is None or event.get(key) == wanted
                for key, wanted in (("type", type), ("name", name), ("status", status))
            )
        ]
        if matches:
            return matches
        wanted = ", ".join(
            f"{key}={value!r}"
            for key, value in (("type", type), ("name", name), ("status", status))
            if value is not None
        )
        found = (
            f"none of its {plural(len(events), 'event')} matches:"
            if events
            else "no event in the trace"
        )
        details = [_event_line(event) for event in events[:_MAX_DETAILS]]
        raise self._failure(
            f"an event ({wanted or 'any'}) in trace {trace_id}", found, details, [trace_id]
        )

    def assert_within_budget(
        self, trace_id: str, max_tokens: int | None = None, max_cost: float | None = None
    ) -> None:
        """Assert the trace stayed within budget: the `usage.tokens` of its LLM calls add up to at
        most `max_tokens`, and the costs of its events (LLM calls and actions), converted to the
        policy currency with its fx_rates, to at most `max_cost`."""
        __tracebackhide__ = True
        if max_tokens is None and max_cost is None:
            raise TypeError("assert_within_budget needs max_tokens, max_cost or both")
        currency = self.policy.currency
        limits = [f"at most {max_tokens} tokens" if max_tokens is not None else ""]
        limits.append(
            f"at most {format_amount(max_cost, currency)}" if max_cost is not None else ""
        )
        expected = f"trace {trace_id} within budget: " + ", ".join(x for x in limits if x)
        events = self.events(trace_id)
        if not events and not self.store.decisions(trace_id):
            raise self._failure(expected, "no such trace", [], [trace_id])
        tokens, calls = 0, 0
        costs: list[float] = []
        unknown: list[str] = []
        details: list[str] = []
        for event in events:
            used = _number(_at(event, "usage", "tokens"))
            used = used if event.get("type") == "llm_call" else None
            amount, unit = _number(_at(event, "cost", "amount")), _at(event, "cost", "currency")
            if used is None and amount is None:
                continue
            if used is not None:
                tokens, calls = tokens + int(used), calls + 1
            money = format_amount(amount, unit)
            if amount is not None:
                converted = self.policy.to_policy_currency(amount, unit or None)
                if converted is None:
                    unknown.append(money)
                else:
                    costs.append(converted)
                    if converted != amount:
                        money += f" = {format_amount(converted, currency)}"
            spent = [f"{used:.0f} tokens" if used is not None else "", money]
            details.append(_event_line(event) + "  " + "  ".join(x for x in spent if x))
        total = math.fsum(costs)
        over_tokens = max_tokens is not None and tokens > max_tokens
        over_cost = max_cost is not None and total > max_cost and not math.isclose(total, max_cost)
        if not (over_tokens or over_cost or (max_cost is not None and unknown)):
            return
        found = f"{tokens} tokens in {plural(calls, 'LLM call')}, costs {format_amount(total, currency)}"
        if unknown:
            found += f"; not convertible to {currency}: {', '.join(unknown)}"
        found += ":" if details else ""
        raise self._failure(expected, found, details[:_MAX_DETAILS], [trace_id])

    # --- shared ----------------------------------------------------------------------------------

    def _check_tool(self, tool: str, trace_id: str | None, wanted: str) -> list[GatedToolCall]:
        __tracebackhide__ = True
        calls = self.tool_calls(trace_id, tool)
        wrong = [call for call in calls if call.verdict != wanted]
        if calls and not wrong:
            return calls
        if calls:
            found = f"{len(wrong)} of {plural(len(calls), 'gated call')} of {tool!r} not {wanted}:"
        else:
            seen = sorted({call.tool for call in self.tool_calls(trace_id)})
            others = f"gated were: {', '.join(seen)}" if seen else "no tool call was gated"
            found = f"no gated call of {tool!r}{_scope(trace_id)}; {others}"
        details = [decision_line(call.decision, call.verdict) for call in calls]
        traces = [trace_id] if trace_id else [c.decision.trace_id for c in calls]
        raise self._failure(
            f"tool {tool!r} gated and {wanted}{_scope(trace_id)}", found, details, traces
        )

    def _check_permission(
        self, permission: str, trace_id: str | None, wanted: str
    ) -> list[DecisionRecord]:
        __tracebackhide__ = True
        decisions = self.decisions(trace_id, permission=permission)
        verdicts = [self.verdict(decision) for decision in decisions]
        if decisions and all(verdict == wanted for verdict in verdicts):
            return decisions
        if decisions:
            wrong = sum(verdict != wanted for verdict in verdicts)
            found = (
                f"{wrong} of {plural(len(decisions), 'decision')} on {permission!r} not {wanted}:"
            )
        else:
            found = f"no decision on {permission!r}{_scope(trace_id)}"
        details = [decision_line(d, v) for d, v in zip(decisions, verdicts, strict=True)]
        if not decisions:  # a typo in the permission shows here
            details = [decision_line(d, self.verdict(d)) for d in self.decisions(trace_id)]
            found += "; the decisions were:" if details else "; there was none at all"
        traces = [trace_id] if trace_id else [d.trace_id for d in decisions]
        expected = f"{permission!r} {wanted}{_scope(trace_id)}"
        raise self._failure(expected, found, details[:_MAX_DETAILS], traces)

    def _failure(
        self, expected: str, found: str, details: Sequence[str], traces: Sequence[str | None]
    ) -> AssertionError:
        """The error, with the timelines of `traces`, or of every trace when none is named."""
        named = [trace for trace in traces if trace]
        if not named:
            named = [summary.trace_id for summary in self.traces()]
        return failure(expected, found, details, timelines(self.store, named))
