"""Reading what the platform recorded, once every client talking to it has delivered.

Telemetry reaches the platform from each client's dispatcher thread, some milliseconds after
`record()` returned, so a read straight after the agent ran could miss the last events and make
a test flaky. Every read therefore first flushes the live clients connected to this platform:
those the fixtures made and those the code under test made itself with
`TracengentOptions.local()`. Governance calls (authorize, tool-authorize) are synchronous and
stored before the agent sees the answer; they need no flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracengent._dispatch import _LIVE
from tracengent.platform import (
    Approval,
    DecisionRecord,
    EmbeddedTransport,
    Platform,
    Policy,
    Store,
    TraceSummary,
    render_timeline,
)

FLUSH_TIMEOUT_S = 5.0
_EVERY_TRACE = 1 << 62  # Store.traces() wants a limit; a test wants them all
_APPROVAL_VERDICTS = {"approved": "allowed", "denied": "denied", "expired": "denied"}


@dataclass(frozen=True)
class GatedToolCall:
    """One tool call the platform decided on: the tool, the decision, and how it ended."""

    #: the MCP tool or function name; for HTTP, "POST api.stripe.com/v1/refunds"
    tool: str
    transport: str  # "mcp" | "function" | "http"
    decision: DecisionRecord
    #: "allowed" | "denied" | "pending": the decision after any human approval of it
    verdict: str


def _matches(decision: DecisionRecord, tool: str) -> bool:
    """By the stored name; an HTTP call ("POST api.stripe.com/v1/refunds") also by its host."""
    if tool == decision.tool:
        return True
    if decision.tool is None or decision.transport != "http":
        return False
    before_path = decision.tool.partition("/")[0]  # "POST api.stripe.com"
    return tool == before_path.rpartition(" ")[2]


class _Reader:
    """The read side of `PlatformRecorder`."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    @property
    def store(self) -> Store:
        return self.platform.store

    @property
    def policy(self) -> Policy:
        return self.platform.policy

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every live client of this platform delivered what it recorded so far.

        The reading helpers call it; False when a client did not finish within `timeout`.
        """
        done = True
        for dispatcher in list(_LIVE):
            transport = dispatcher._connection.transport
            if isinstance(transport, EmbeddedTransport) and transport.platform is self.platform:
                done = dispatcher.flush(timeout) and done
        return done

    def events(
        self, trace_id: str | None = None, type: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Events as the platform stored them (wire JSON, camelCase keys), in arrival order."""
        self.flush()
        return [
            event
            for event in self.store.events(trace_id)
            if (type is None or event.get("type") == type)
            and (name is None or event.get("name") == name)
        ]

    def decisions(
        self, trace_id: str | None = None, *, permission: str | None = None
    ) -> list[DecisionRecord]:
        """Authorization and tool decisions, oldest first."""
        self.flush()
        return [
            decision
            for decision in self.store.decisions(trace_id)
            if permission is None or decision.permission == permission
        ]

    def approvals(self, status: str | None = None) -> list[Approval]:
        """Approvals, oldest first; `status` is "pending", "approved", "denied" or "expired"."""
        return self.store.approvals(status)

    def tool_calls(
        self, trace_id: str | None = None, tool: str | None = None
    ) -> list[GatedToolCall]:
        """The tool calls that were gated (MCP, function, HTTP), oldest first.

        `tool` matches the MCP tool or function name, or an HTTP call's host or
        "METHOD host/path".
        """
        return [
            GatedToolCall(
                tool=decision.tool or "?",
                transport=decision.transport or "?",
                decision=decision,
                verdict=self.verdict(decision),
            )
            for decision in self.decisions(trace_id)
            if decision.kind == "tool" and (tool is None or _matches(decision, tool))
        ]

    def verdict(self, decision: DecisionRecord) -> str:
        """ "allowed", "denied" or "pending": the decision, or its approval once a person decided."""
        if decision.status != "pending_approval":
            return decision.status
        approval = self.store.approval(decision.approval_id) if decision.approval_id else None
        return _APPROVAL_VERDICTS.get(approval.status if approval else "", "pending")

    def traces(self) -> list[TraceSummary]:
        """Every trace, in the order they started."""
        self.flush()
        return list(reversed(self.store.traces(_EVERY_TRACE)))

    def timeline(self, trace_id: str | None = None) -> str:
        """A trace as text, one line per entry (`tracengent traces show`); None: every trace.

        Raises `KeyError` for a trace the platform knows nothing about.
        """
        if trace_id is not None:
            self.flush()
            return render_timeline(self.store, trace_id)
        texts = [render_timeline(self.store, t.trace_id) for t in self.traces()]
        return "\n\n".join(texts) or "no traces"
