"""Tool governance: the platform's verdict on one outbound tool call, and how to get it.

HTTP egress, MCP `tools/call` and LLM function calls all go through `POST /v1/tool-authorize`.
Nothing here lets an undecided call through: a failure to decide is a deny naming the cause,
unless the user opted into fail-open for HTTP egress, and then the call is logged and recorded
as ungoverned.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import tracengent_api as api
from pydantic import ValidationError

from ._authorization import _text, call_platform, failure
from ._context import ambient_trace
from ._errors import ToolDeniedException, ToolPendingApprovalException
from ._flow import Flow, TokenUnavailable
from ._observe import observe_decision
from ._redaction import Redaction
from ._wire import as_model

if TYPE_CHECKING:
    from ._runtime import FlowContext


@dataclass
class ToolDecision:
    """The platform's verdict on an outbound tool call (`POST /v1/tool-authorize`)."""

    allowed: bool = False
    #: "allowed" | "denied" | "pending_approval"
    status: str = "denied"
    #: "policy_allow" | "policy_deny" | "egress_deny" | … (an outcome this SDK does not know
    #: stays a string)
    outcome: str = ""
    reason: str = ""
    permission: str | None = None
    decision_id: str | None = None
    approval_id: str | None = None
    redactions: list[Redaction] | None = None
    #: True when no decision could be had and the user's fail-open setting let the call through.
    ungoverned: bool = field(default=False, repr=False)
    #: In shadow mode: what enforcing the platform's decision would have done ("deny", "hold",
    #: "redact"); this decision then lets the call through unchanged.
    not_enforced: str | None = None

    def shadowed(self, what: str) -> ToolDecision:
        """This decision as shadow mode applies it: an allow that says what it did not enforce."""
        return dataclasses.replace(
            self,
            allowed=True,
            status="allowed",
            reason=f"shadow mode: would {what}: {self.reason}",
            redactions=None,
            not_enforced=what,
        )

    @property
    def pending(self) -> bool:
        return self.status == "pending_approval"

    @classmethod
    def allow(cls, reason: str) -> ToolDecision:
        return cls(allowed=True, status="allowed", outcome="policy_allow", reason=reason)

    @classmethod
    def deny(cls, reason: str) -> ToolDecision:
        return cls(allowed=False, status="denied", outcome="policy_deny", reason=reason)

    @classmethod
    def from_wire(cls, data: api.ToolAuthorizeResponse | Mapping[str, Any]) -> ToolDecision:
        answer = as_model(api.ToolAuthorizeResponse, data)
        status = _text(answer.status)
        redactions = None
        if answer.redactions is not None:
            redactions = [
                Redaction(r.field, _text(r.strategy or "remove")) for r in answer.redactions
            ]
        return cls(
            allowed=answer.allowed and status == "allowed",
            status=status,
            outcome=_text(answer.outcome or ""),
            reason=answer.reason or "",
            permission=answer.permission,
            decision_id=answer.decision_id,
            approval_id=answer.approval_id,
            redactions=redactions,
        )


@dataclass
class ToolGuardResult:
    """A decision plus the arguments to forward (redacted when the decision says so)."""

    decision: ToolDecision
    arguments: Any

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def ensure_allowed(self) -> None:
        """Raise unless the call may proceed."""
        raise_unless_allowed(self.decision)


def raise_unless_allowed(decision: ToolDecision) -> None:
    if decision.pending:
        raise ToolPendingApprovalException(decision.approval_id, decision.reason)
    if not decision.allowed:
        raise ToolDeniedException(decision.reason, decision.permission, decision.outcome or None)


def redactions_for(decision: ToolDecision) -> list[Redaction]:
    """The decision's redactions plus the redactFields obligations of the current trace."""
    rules = list(decision.redactions or ())
    trace = ambient_trace()
    if trace is not None:
        rules += [Redaction(path, "remove") for path in trace.obligation_redactions]
    return rules


def tool_authorize_flow(
    core: FlowContext, request: api.ToolAuthorizeRequest, *, fail_open: bool = False
) -> Flow[ToolDecision]:
    """Ask the platform about one tool call; the ambient trace's id goes along.

    `fail_open` lets the call through only when the platform could not be asked (unreachable,
    timed out, 5xx, 429): a refusal of the agent's credentials, or any other answer, is a
    decision, and it is a deny.
    """
    trace = ambient_trace()
    if trace is not None:
        request.trace_id = trace.trace_id
    subject = request.tool_name or request.function_name or f"{request.method} {request.host}"
    try:
        body = api.encode_tool_authorize(request)
    except (ValidationError, ValueError, TypeError) as error:
        reason = f"tool-authorize not sent: the request is not valid ({error})"
        return decided(core, subject, ToolDecision.deny(reason))
    build = functools.partial(api.build_tool_authorize, body, base_url=core.options.base_url)
    try:
        response = yield from call_platform(core, build)
        decision = ToolDecision.from_wire(api.parse_tool_authorize(response))
    except Exception as error:  # noqa: BLE001 - no decision: fail closed (or open, if asked)
        reason = failure("tool-authorize", error)
        if fail_open and _is_outage(error):
            decision = ToolDecision.allow(f"proceeded ungoverned (fail-open): {reason}")
            decision.ungoverned = True
        else:
            decision = ToolDecision.deny(f"fail-closed: {reason}")
    return decided(core, subject, decision)


def _is_outage(error: Exception) -> bool:
    """No answer to be had (the only case fail-open covers), as opposed to a refusal."""
    if isinstance(error, TokenUnavailable):
        return False  # the token endpoint refused the credentials: that is an answer
    if isinstance(error, api.ApiError):
        return error.retryable  # 429 and 5xx; a 401/403/4xx or an unreadable 2xx is not
    return isinstance(error, httpx.TransportError)


def decided(core: FlowContext, subject: str, decision: ToolDecision) -> ToolDecision:
    """The decision as the agent sees it: its reason scrubbed, the observer told."""
    decision.reason = core.scrub(decision.reason)
    observe_decision(core, "tool", subject, decision)
    return decision


def arguments_request(transport: api.Transport, name: str, body: Any) -> api.ToolAuthorizeRequest:
    """The question about an MCP tool or function call whose arguments are the JSON `body`."""
    if transport is api.Transport.MCP:
        return api.ToolAuthorizeRequest(transport=transport, tool_name=name, body=body)
    return api.ToolAuthorizeRequest(transport=transport, function_name=name, body=body)
