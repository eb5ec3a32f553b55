"""Authorization: decisions, obligations, and the flows that ask for them.

Governance fails closed: a platform that cannot be reached, times out, answers non-2xx or
answers something unreadable yields a deny whose reason names the cause; nothing here raises
into the agent except `NotAuthorizedException` from `ensure_authorized`, which is the point.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import tracengent_api as api
from pydantic import ValidationError

from ._approval_handle import ApprovalHandle
from ._approvals import ApprovalPendingException, authorize_digest, resume_problem
from ._context import ambient_trace
from ._enforcement import Enforcement, enforced, record_would
from ._errors import NotAuthorizedException
from ._events import Number
from ._flow import Flow, Sleep, TokenUnavailable, authed
from ._observe import observe_decision
from ._tool_args import UnreadableArguments, to_json_arguments
from ._wire import ESTIMATED_TOKENS, as_model

if TYPE_CHECKING:
    from ._runtime import FlowContext, RecordingContext


@dataclass
class AuthObligations:
    """Constraints the platform attaches to an allow decision."""

    max_amount: Number | None = None
    require_approval_over: Number | None = None
    redact_fields: list[str] | None = None
    #: Currency `max_amount` and `require_approval_over` are expressed in (e.g. "EUR").
    currency: str | None = None


@dataclass
class AuthDecision:
    """The result of `POST /v1/authorize`, or a local deny when no decision could be had."""

    allowed: bool = False
    reason: str = ""
    obligations: AuthObligations | None = None
    decision_id: str = ""
    #: "allowed", "denied" or "pending_approval" (a status this SDK does not know stays a string).
    status: str = "denied"
    approval_id: str | None = None
    #: Under delegated authority: the root principal and the delegation chain, root first.
    acting_for: str | None = None
    chain: list[str] | None = None

    @property
    def pending(self) -> bool:
        return self.status == "pending_approval"

    @property
    def denial_reason(self) -> str:
        """Why this is not an allow, in words (a pending decision names its approval)."""
        if self.pending:
            waiting = f"waiting for approval {self.approval_id or '(no id)'}"
            return f"{waiting}: {self.reason}" if self.reason else waiting
        return self.reason or self.status

    @classmethod
    def deny(cls, reason: str, approval_id: str | None = None) -> AuthDecision:
        """A deny decided by the SDK itself (fail closed)."""
        return cls(allowed=False, status="denied", reason=reason, approval_id=approval_id)

    @classmethod
    def from_wire(cls, data: api.AuthorizeResponse | Mapping[str, Any]) -> AuthDecision:
        answer = as_model(api.AuthorizeResponse, data)
        wire = answer.obligations
        status = _text(answer.status)
        return cls(
            # an "allowed" flag next to any other status is not an allow
            allowed=answer.allowed and status == "allowed",
            reason=answer.reason or "",
            decision_id=answer.decision_id or "",
            status=status,
            approval_id=answer.approval_id,
            acting_for=answer.acting_for,
            chain=list(answer.chain) if answer.chain is not None else None,
            obligations=_obligations(wire),
        )


def _obligations(wire: api.Obligations | None) -> AuthObligations | None:
    if wire is None:
        return None
    return AuthObligations(
        max_amount=wire.max_amount,
        require_approval_over=wire.require_approval_over,
        redact_fields=list(wire.redact_fields) if wire.redact_fields is not None else None,
        currency=wire.currency,
    )


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def enforce_obligations(decision: AuthDecision, context: Mapping[str, Any] | None) -> AuthDecision:
    """An allow whose own maxAmount the context's amount (same currency) exceeds is a deny, and
    so is one whose maxAmount cannot be checked: missing is not unlimited."""
    obligations = decision.obligations
    if not decision.allowed or obligations is None or obligations.max_amount is None:
        return decision
    ceiling = obligations.max_amount
    unit = f" {obligations.currency}" if obligations.currency else ""
    if finite_amount(ceiling) is None:
        return _over_limit(
            decision, f"the decision's maxAmount ({ceiling!r}) is not a usable limit"
        )
    amount = None if context is None else context.get("amount")
    currency = None if context is None else context.get("currency")
    if amount is None:
        return _over_limit(
            decision,
            f"the decision limits the amount to {ceiling}{unit}, but the context has no amount "
            "to check it against: pass the amount in the context",
        )
    if obligations.currency and currency and str(currency).upper() != obligations.currency.upper():
        return decision  # the platform converted and checked; a foreign amount is not comparable
    value = finite_amount(amount)
    if value is None:
        return _over_limit(decision, f"the context's amount ({amount!r}) cannot be checked")
    if value > ceiling:
        return _over_limit(
            decision, f"amount {amount}{unit} exceeds the decision's maxAmount {ceiling}{unit}"
        )
    return decision


def _over_limit(decision: AuthDecision, reason: str) -> AuthDecision:
    return AuthDecision(
        allowed=False,
        status="denied",
        reason=reason,
        decision_id=decision.decision_id,
        obligations=decision.obligations,
        acting_for=decision.acting_for,
        chain=decision.chain,
    )


def finite_amount(value: object) -> float | None:
    """`value` as a finite, non-negative number, or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def context_problem(context: Mapping[str, Any] | None) -> str | None:
    """Why `context` must not be sent, or None: a limit needs numbers it can check.

    A negative, non-finite or non-numeric `amount`, a negative or fractional `estimatedTokens`,
    and anything that is not JSON (a non-finite number anywhere would travel as null, i.e. as
    missing) are refused before anything is sent.
    """
    if context is None:
        return None
    if not isinstance(context, Mapping):
        return f"the context must be a mapping, not {type(context).__name__}"
    amount = context.get("amount")
    if amount is not None and finite_amount(amount) is None:
        return f"amount must be a finite number >= 0, not {amount!r}"
    tokens = context.get(ESTIMATED_TOKENS)
    if tokens is not None and (
        isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0
    ):
        return f"{ESTIMATED_TOKENS} must be a whole number >= 0, not {tokens!r}"
    try:  # the same reading as tool arguments: JSON, or refused saying where it is not
        to_json_arguments(context, "context")
    except UnreadableArguments as error:
        return str(error)
    return None


def call_platform(
    core: FlowContext,
    build: Callable[..., httpx.Request],
    bearer: str | None = None,
    timeout: float | None = None,
) -> Flow[httpx.Response]:
    """Send `build(bearer_token=…, ingest_key=…)` with the right credentials: a delegated bearer
    (never mixed with the agent's own), else the agent's token (refetched once on a 401), else
    its ingest key."""
    if bearer is not None:
        make, uses_token = (lambda _t: build(bearer_token=bearer)), False
    elif core.connection.tokens is not None:
        make, uses_token = (lambda t: build(bearer_token=t, ingest_key=None)), True
    else:
        key = core.options.ingest_key
        make, uses_token = (lambda _t: build(bearer_token=None, ingest_key=key)), False
    deadline = core.options.authorize_timeout_s if timeout is None else timeout
    response: httpx.Response = yield from authed(make, deadline, uses_token)
    return response


def failure(what: str, error: Exception) -> str:
    """Why no decision could be had, in words (scrub it before it leaves)."""
    if isinstance(error, api.ApiError):
        return f"{what} failed: {error}"
    if isinstance(error, TokenUnavailable):
        return f"{what} failed: no access token ({error})"
    if isinstance(error, httpx.TimeoutException):
        return f"{what} failed: the platform did not answer in time ({type(error).__name__})"
    return f"{what} failed: the platform is unreachable ({type(error).__name__}: {error})"


def authorize_flow(
    core: FlowContext,
    permission: str,
    context: Mapping[str, Any] | None,
    bearer: str | None = None,
) -> Flow[AuthDecision]:
    """Ask once and hold the answer to its own obligations (an allow over its maxAmount is a
    deny); the ambient trace's id goes along so the decision is stored with its trace."""
    trace = ambient_trace()
    trace_id = trace.trace_id if trace is not None else None
    decision: AuthDecision
    if (problem := context_problem(context)) is not None:
        reason = f"authorize not sent: the context is not valid ({problem})"
        return _decided(core, permission, AuthDecision.deny(reason))
    try:
        body = api.encode_authorize(
            api.AuthorizeRequest(
                permission=permission,
                context=None if context is None else api.AuthorizeContext.model_validate(context),
                trace_id=trace_id,
            )
        )
    except (ValidationError, ValueError, TypeError) as error:
        reason = f"authorize not sent: the context is not valid ({error})"
        return _decided(core, permission, AuthDecision.deny(reason))
    build = functools.partial(api.build_authorize, body, base_url=core.options.base_url)
    try:
        response = yield from call_platform(core, build, bearer)
        decision = AuthDecision.from_wire(api.parse_authorize(response))
    except Exception as error:  # noqa: BLE001 - every failure is a deny that says why
        decision = AuthDecision.deny(failure("authorize", error))
    return _decided(core, permission, enforce_obligations(decision, context))


def _decided(core: FlowContext, permission: str, decision: AuthDecision) -> AuthDecision:
    """The decision as the agent sees it: its reason scrubbed, the observer told."""
    decision.reason = core.scrub(decision.reason)
    observe_decision(core, "authorize", permission, decision)
    return decision


def approval_flow(
    core: FlowContext,
    approval_id: str,
    timeout: float | None = None,
    poll_interval: float | None = None,
    bearer: str | None = None,
    wait: bool = True,
) -> Flow[AuthDecision]:
    """Poll a pending approval until a person decides, it expires, or `timeout` runs out;
    without `wait`, ask once: still pending is a pending decision."""
    options = core.options
    timeout = options.approval_timeout_s if timeout is None else timeout
    poll_interval = options.approval_poll_interval_s if poll_interval is None else poll_interval
    build = functools.partial(api.build_get_approval, approval_id, base_url=options.base_url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = max(0.01, deadline - time.monotonic())  # a poll ends by the deadline too
            response = yield from call_platform(
                core, build, bearer, min(options.authorize_timeout_s, left)
            )
            answer = api.parse_get_approval(response)
            status, binds = _text(answer.status), _obligations(answer.obligations)
        except Exception:  # noqa: BLE001 - a failed poll is retried until the deadline
            status, binds = "unknown", None
        if status == "approved":
            return AuthDecision(
                allowed=True,
                status="allowed",
                reason="approved",
                approval_id=approval_id,
                obligations=binds,
            )
        if not wait and status == "pending":
            undecided = "nobody has decided yet"
            return AuthDecision(
                status="pending_approval", reason=undecided, approval_id=approval_id
            )
        reason = _approval_refusal(status, core.scrub(approval_id), timeout, deadline)
        if reason is not None:
            return AuthDecision.deny(reason, approval_id)
        yield Sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))


def _approval_refusal(status: str, approval: str, timeout: float, deadline: float) -> str | None:
    """Why a pending approval ends without an allow, or None while it may still be approved.
    A reviewer's refusal and nobody deciding in time are told apart."""
    if status == "denied":
        return f"approval {approval} was denied by a reviewer"
    if status == "expired":
        return f"approval {approval} timed out: it expired before anyone decided"
    if deadline - time.monotonic() <= 0:
        return f"approval {approval} timed out: no decision within {timeout:g}s"
    return None


def obligations_of(decided: Flow[AuthDecision]) -> Flow[AuthObligations | None]:
    """What `ensure_authorized` answers: the obligations of the allow `decided` ends in (None
    for an allow without any, or a refusal shadow mode let through)."""
    decision = yield from decided
    return decision.obligations if decision.allowed else None


def decide_flow(
    core: RecordingContext,
    permission: str,
    context: Mapping[str, Any] | None,
    bearer: str | None = None,
    enforcement: Enforcement | None = None,
    wait: bool = True,
) -> Flow[AuthDecision]:
    """Authorize, wait out a pending approval, enforce obligations; raise unless allowed; the
    decision (a token reservation names its id; `obligations_of` is what ensure_authorized
    answers).

    In shadow mode (see `_enforcement`) nothing waits or raises: what would have denied, held
    or bound redactions is recorded, and the call goes on."""
    enforce = enforced(core, enforcement)  # a bad mode is refused before anything is asked
    decision = yield from authorize_flow(core, permission, context, bearer)
    if not enforce:
        redacts = bool(decision.obligations and decision.obligations.redact_fields)
        record_would(core, "authorize", permission, decision, redacts)
        return decision
    if decision.pending and decision.approval_id is not None:
        if not wait:  # the call is bound to what was asked, to be resumed later
            digest = authorize_digest(permission, context)
            handle = ApprovalHandle.issue(decision.approval_id, "authorize", digest)
            raise ApprovalPendingException(permission, decision.denial_reason, handle)
        approved = yield from approval_flow(core, decision.approval_id, bearer=bearer)
        if approved.allowed:  # the approval lifts the hold; the decision's obligations still bind
            approved.obligations = decision.obligations or approved.obligations
            approved.decision_id = decision.decision_id
        decision = approved
    decision = enforce_obligations(decision, context)
    if not decision.allowed:
        raise NotAuthorizedException(permission, decision.reason or decision.status)
    _bind_redactions(decision.obligations)
    return decision


def resume_flow(
    core: FlowContext,
    handle: ApprovalHandle,
    permission: str,
    context: Mapping[str, Any] | None,
    released: set[str],
    wait: bool = True,
    timeout: float | None = None,
) -> Flow[AuthObligations | None]:
    """Release the call `handle` was issued for, once: refused unless the call presented is
    that call and a person approved it; still pending waits (or, without `wait`, raises again)."""
    problem = resume_problem(handle, permission, context, released)
    if problem is not None:
        decision = _decided(core, permission, AuthDecision.deny(problem, handle.approval_id))
        raise NotAuthorizedException(permission, decision.reason)

    def unmet(approved: AuthDecision) -> str | None:  # an approval lifts the hold, not the limits
        checked = enforce_obligations(approved, context)
        return None if checked.allowed else checked.reason

    decision = yield from spend_approval_flow(core, handle, released, unmet, wait, timeout)
    if decision.pending:
        raise ApprovalPendingException(permission, decision.denial_reason, handle)
    observe_decision(core, "authorize", permission, decision)
    if not decision.allowed:
        raise NotAuthorizedException(permission, decision.reason or decision.status)
    _bind_redactions(decision.obligations)
    return decision.obligations


def spend_approval_flow(
    core: FlowContext,
    handle: ApprovalHandle,
    released: set[str],
    check: Callable[[AuthDecision], str | None],
    wait: bool = False,
    timeout: float | None = None,
) -> Flow[AuthDecision]:
    """The approval `handle` names, read and spent on this one call: an allow, the pending
    decision it still is, or a deny saying why (a reviewer refused, nobody decided in time,
    `check` refused what the approval binds, it released a call already). Authorization and
    tool resumes share it, so the order is one: approved, checked, spent at the platform,
    remembered by this client — an approval is never spent on a call that will not run."""
    decision = yield from approval_flow(core, handle.approval_id, timeout, wait=wait)
    if not decision.allowed:
        return decision
    refused = check(decision)
    if refused is None:
        refused = yield from release_flow(core, handle.approval_id)
    if refused is not None:
        return AuthDecision.deny(core.scrub(refused), handle.approval_id)
    released.add(handle.approval_id)
    return decision


def release_flow(core: FlowContext, approval_id: str) -> Flow[str | None]:
    """Spend the approval on this call at the platform, so that it releases one call whichever
    process or worker resumes it; why not, or None once released. A platform that does not
    offer it (404) leaves the once-only rule to each client; any other failure is a deny."""
    build = functools.partial(
        api.build_release_approval, approval_id, base_url=core.options.base_url
    )
    try:
        api.parse_release_approval((yield from call_platform(core, build)))
    except api.NotFoundError:
        return None
    except api.ApiError as error:
        if error.status_code == 409:
            return f"approval {approval_id} already released its call: an approval releases one"
        return failure("releasing the approval", error)
    except Exception as error:  # noqa: BLE001 - an approval that cannot be spent releases nothing
        return failure("releasing the approval", error)
    return None


def _bind_redactions(obligations: AuthObligations | None) -> None:
    """redactFields bind the rest of the trace: the tool gates apply them to what they forward."""
    trace = ambient_trace()
    if trace is not None and obligations is not None and obligations.redact_fields:
        trace.bind_redactions(obligations.redact_fields)
