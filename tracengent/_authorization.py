"""Authorization: decisions, obligations, and the flows that ask for them.

Governance fails closed: a platform that cannot be reached, times out, answers non-2xx or
answers something unreadable yields a deny whose reason names the cause; nothing here raises
into the agent except `NotAuthorizedException` from `ensure_authorized`, which is the point.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import tracengent_api as api
from pydantic import ValidationError

from ._events import Number
from ._flow import Flow, Sleep, TokenUnavailable, authed
from ._observe import observe_decision
from ._trace import current_trace

if TYPE_CHECKING:
    from ._core import ClientCore


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
        answer = (
            data
            if isinstance(data, api.AuthorizeResponse)
            else api.AuthorizeResponse.model_validate(data)
        )
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
            obligations=None
            if wire is None
            else AuthObligations(
                max_amount=wire.max_amount,
                require_approval_over=wire.require_approval_over,
                redact_fields=list(wire.redact_fields) if wire.redact_fields is not None else None,
                currency=wire.currency,
            ),
        )


class NotAuthorizedException(Exception):
    """Raised by `ensure_authorized` when an action is not permitted."""

    def __init__(self, permission: str, reason: str) -> None:
        super().__init__(f"Not authorized for '{permission}': {reason}")
        self.permission = permission
        self.reason = reason


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def enforce_obligations(decision: AuthDecision, context: Mapping[str, Any] | None) -> AuthDecision:
    """An allow whose own maxAmount the context's amount (same currency) exceeds is a deny."""
    obligations = decision.obligations
    if not decision.allowed or obligations is None or obligations.max_amount is None or not context:
        return decision
    amount, currency = context.get("amount"), context.get("currency")
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return decision
    if obligations.currency and currency and str(currency).upper() != obligations.currency.upper():
        return decision  # the platform converted; a foreign-currency amount is not comparable here
    if amount > obligations.max_amount:
        unit = f" {obligations.currency}" if obligations.currency else ""
        return AuthDecision(
            allowed=False,
            status="denied",
            reason=f"amount {amount}{unit} exceeds the decision's maxAmount {obligations.max_amount}{unit}",
            decision_id=decision.decision_id,
            obligations=obligations,
            acting_for=decision.acting_for,
            chain=decision.chain,
        )
    return decision


def call_platform(
    core: ClientCore,
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


def _failure(what: str, error: Exception) -> str:
    if isinstance(error, api.ApiError):
        return f"{what} failed: {error}"
    if isinstance(error, TokenUnavailable):
        return f"{what} failed: no access token ({error})"
    if isinstance(error, httpx.TimeoutException):
        return f"{what} failed: the platform did not answer in time ({type(error).__name__})"
    return f"{what} failed: the platform is unreachable ({type(error).__name__}: {error})"


def authorize_flow(
    core: ClientCore,
    permission: str,
    context: Mapping[str, Any] | None,
    bearer: str | None = None,
) -> Flow[AuthDecision]:
    """Ask once; the ambient trace's id goes along so the decision is stored with its trace."""
    trace = current_trace()
    trace_id = trace.trace_id if trace is not None else None
    try:
        body = api.encode_authorize(
            api.AuthorizeRequest(
                permission=permission,
                context=None if context is None else api.AuthorizeContext.model_validate(context),
                trace_id=trace_id,
            )
        )
    except (ValidationError, ValueError, TypeError) as error:
        return AuthDecision.deny(f"authorize not sent: the context is not valid ({error})")
    build = functools.partial(api.build_authorize, body, base_url=core.options.base_url)
    try:
        response = yield from call_platform(core, build, bearer)
        decision = AuthDecision.from_wire(api.parse_authorize(response))
    except Exception as error:  # noqa: BLE001 - every failure is a deny that says why
        decision = AuthDecision.deny(_failure("authorize", error))
    observe_decision(core, "authorize", permission, decision)
    return decision


def approval_flow(
    core: ClientCore,
    approval_id: str,
    timeout: float | None = None,
    poll_interval: float | None = None,
    bearer: str | None = None,
) -> Flow[AuthDecision]:
    """Poll a pending approval until a person decides, it expires, or `timeout` runs out."""
    options = core.options
    timeout = options.approval_timeout_s if timeout is None else timeout
    poll_interval = options.approval_poll_interval_s if poll_interval is None else poll_interval
    build = functools.partial(api.build_get_approval, approval_id, base_url=options.base_url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = yield from call_platform(
                core, build, bearer, min(options.authorize_timeout_s, timeout)
            )
            status = _text(api.parse_get_approval(response).status)
        except Exception:  # noqa: BLE001 - a failed poll is retried until the deadline
            status = "unknown"
        if status == "approved":
            return AuthDecision(
                allowed=True, status="allowed", reason="approved", approval_id=approval_id
            )
        if status == "denied":
            return AuthDecision.deny(
                f"approval {approval_id} was denied by a reviewer", approval_id
            )
        if status == "expired":
            return AuthDecision.deny(
                f"approval {approval_id} timed out: it expired before anyone decided", approval_id
            )
        left = deadline - time.monotonic()
        if left <= 0:
            return AuthDecision.deny(
                f"approval {approval_id} timed out: no decision within {timeout:g}s", approval_id
            )
        yield Sleep(min(poll_interval, left))


def ensure_flow(
    core: ClientCore,
    permission: str,
    context: Mapping[str, Any] | None,
    bearer: str | None = None,
) -> Flow[AuthObligations | None]:
    """Authorize, wait out a pending approval, enforce obligations; raise unless allowed."""
    decision = yield from authorize_flow(core, permission, context, bearer)
    if decision.pending and decision.approval_id is not None:
        approved = yield from approval_flow(core, decision.approval_id, bearer=bearer)
        if approved.allowed:  # the approval lifts the hold; the decision's obligations still bind
            approved.obligations, approved.decision_id = decision.obligations, decision.decision_id
        decision = approved
    decision = enforce_obligations(decision, context)
    if not decision.allowed:
        raise NotAuthorizedException(permission, decision.reason or decision.status)
    _bind_redactions(decision.obligations)
    return decision.obligations


def _bind_redactions(obligations: AuthObligations | None) -> None:
    """redactFields bind the rest of the trace: the tool gates apply them to what they forward."""
    trace = current_trace()
    if trace is None or obligations is None or not obligations.redact_fields:
        return
    known = trace._obligation_redactions
    trace._obligation_redactions = known + tuple(
        f for f in obligations.redact_fields if f not in known
    )
