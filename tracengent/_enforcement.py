"""Enforce or shadow: whether a refusal blocks the call, or is only recorded as what would have.

`TracengentOptions(enforcement="shadow")` rolls governance out without breaking an agent: every
decision is still asked and recorded, but nothing is blocked or rewritten — `ensure_authorized`
returns, the gates forward the original call — and each decision that would have denied, held
or redacted is recorded as a `decision` event named "would deny … (shadow)" (the trace timeline
shows it), and told to the observer (`Observer.not_enforced`; OpenTelemetry adds a span event).
A per-call `enforcement="enforce"` enforces one call while the rest is in shadow (and
`enforcement="shadow"` shadows one call of an enforcing client).

Every enforcement point (ensure_authorized, the tool gates, the egress gate, the FastAPI and
Flask bindings) asks `enforced()` and, when it is not, calls `let_through()` with what it would
have done: one logic, written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ._events import AgentEvent, EventStatuses, EventTypes
from ._observe import Decision, notify
from ._tracking import record_in_trace
from ._wire import APPROVAL_ID, DECISION_ID

if TYPE_CHECKING:
    from ._runtime import FlowContext, RecordingContext

Enforcement = Literal["enforce", "shadow"]
MODES: tuple[Enforcement, ...] = ("enforce", "shadow")
#: What a refusal would have done: "deny", "hold" (a pending approval) or "redact".
Would = Literal["deny", "hold", "redact"]


def check_mode(value: object, where: str) -> Enforcement:
    """`value` as a mode, or a ValueError naming where it came from and what is allowed."""
    if value in MODES:
        return value
    raise ValueError(f"{where} must be 'enforce' or 'shadow', not {value!r}")


def enforced(core: FlowContext, override: Enforcement | None) -> bool:
    """Whether refusals block this call: the call's own choice, else the client's option."""
    mode = core.options.enforcement if override is None else check_mode(override, "enforcement")
    return mode != "shadow"


def would(decision: Decision, redacts: bool = False) -> Would | None:
    """What enforcing `decision` would do to the call, None when it would let it through as is."""
    if decision.status == "pending_approval":
        return "hold"
    if not decision.allowed:
        return "deny"
    return "redact" if redacts else None


def shadowed(
    core: RecordingContext,
    enforcement: Enforcement | None,
    kind: str,
    subject: str,
    decision: Decision,
    redacts: bool = False,
) -> bool:
    """True in shadow mode, after recording what enforcing `decision` would have done (if
    anything); False when the caller must enforce it."""
    if enforced(core, enforcement):
        return False
    record_would(core, kind, subject, decision, redacts)
    return True


def record_would(
    core: RecordingContext, kind: str, subject: str, decision: Decision, redacts: bool = False
) -> None:
    """Record what enforcing `decision` would have done, if anything (see `would`)."""
    if (what := would(decision, redacts)) is not None:
        let_through(core, kind, subject, decision, what)


def let_through(
    core: RecordingContext, kind: str, subject: str, decision: Decision, what: Would
) -> None:
    """Record that shadow mode let through a call `decision` would have `what`-ed; never raises."""
    attributes = {
        "shadow": True,
        "would": what,
        "kind": kind,
        "subject": subject,
        "status": decision.status,
        "reason": decision.reason,
    }
    if decision.decision_id:
        attributes[DECISION_ID] = decision.decision_id
    if decision.approval_id:
        attributes[APPROVAL_ID] = decision.approval_id
    record_in_trace(
        core,
        AgentEvent(
            type=EventTypes.DECISION,
            name=f"would {what} {subject} (shadow)",
            status=EventStatuses.SUCCESS,
            attributes=attributes,
        ),
    )
    if core.observer is not None:
        notify(core.observer.not_enforced, kind, subject, decision, what)
