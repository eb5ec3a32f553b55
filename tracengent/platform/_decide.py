"""Policy decisions, without I/O: what the platform answers to an authorize or a tool call.

The engine supplies what it read from the store (tokens already committed) and records the
outcome; everything here is a function of the policy, the request and that number, so each rule
is testable on its own and the served and embedded platforms cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._permissions import any_permission_matches
from .._redaction import value_at
from ._policy import AgentPolicy, PermissionLimit, Policy, ToolBinding

Status = Literal["allowed", "denied", "pending_approval"]


@dataclass(frozen=True)
class Grant:
    """The delegated authority a bearer token carries (from its verified claims)."""

    grant_id: str
    acting_for: str
    chain: tuple[str, ...]
    permissions: tuple[str, ...]
    max_amount: float | None


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str
    obligations: dict[str, Any] | None = None
    reserve_tokens: int | None = None
    redactions: tuple[tuple[str, str], ...] = ()
    limit: PermissionLimit | None = field(default=None, repr=False)

    @property
    def allowed(self) -> bool:
        return self.status == "allowed"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def authorize(
    policy: Policy,
    agent: AgentPolicy,
    grant: Grant | None,
    permission: str,
    context: Mapping[str, Any],
    tokens_committed: int,
) -> Verdict:
    """The authorize pipeline: permission, currency, limits, approval threshold, token budget."""
    if not any_permission_matches(agent.permissions, permission):
        return Verdict("denied", f"'{permission}' is not granted to agent {agent.agent_id}")
    if grant is not None and not any_permission_matches(grant.permissions, permission):
        return Verdict("denied", f"'{permission}' is outside delegated grant {grant.grant_id}")

    amount = None
    if context.get("amount") is not None:
        raw = _number(context.get("amount"))
        if raw is None:
            return Verdict("denied", f"context amount {context.get('amount')!r} is not a number")
        currency = context.get("currency")
        amount = policy.to_policy_currency(raw, currency if isinstance(currency, str) else None)
        if amount is None:
            return Verdict(
                "denied", f"unknown currency {currency!r}: no FX rate to {policy.currency}"
            )
    if (
        grant is not None
        and grant.max_amount is not None
        and amount is not None
        and amount > grant.max_amount
    ):
        return Verdict(
            "denied",
            f"amount {amount:g} {policy.currency} exceeds the grant's maxAmount {grant.max_amount:g}",
        )

    limit = policy.limit_for(permission)
    if limit is not None and amount is not None:
        if limit.max_amount is not None and amount > limit.max_amount:
            return Verdict(
                "denied",
                f"amount {amount:g} {policy.currency} exceeds maxAmount {limit.max_amount:g}",
            )
        if limit.require_approval_over is not None and amount > limit.require_approval_over:
            return Verdict(
                "pending_approval",
                f"amount {amount:g} {policy.currency} is over {limit.require_approval_over:g}: "
                "a person must approve",
                limit=limit,
            )

    reserve = None
    estimated = context.get("estimatedTokens")
    if permission == "llm:call" and isinstance(estimated, int) and not isinstance(estimated, bool):
        budget = agent.llm_token_budget
        if budget is not None and tokens_committed + estimated > budget:
            return Verdict(
                "denied",
                f"token budget exceeded: {tokens_committed} committed + {estimated} requested "
                f"> budget {budget}",
            )
        reserve = estimated
    return Verdict("allowed", "ok", obligations(policy, limit), reserve, limit=limit)


def obligations(policy: Policy, limit: PermissionLimit | None) -> dict[str, Any] | None:
    if limit is None:
        return None
    wire: dict[str, Any] = {}
    if limit.max_amount is not None:
        wire["maxAmount"] = limit.max_amount
    if limit.require_approval_over is not None:
        wire["requireApprovalOver"] = limit.require_approval_over
    if wire:
        wire["currency"] = policy.currency
    if limit.redact_fields:
        wire["redactFields"] = list(limit.redact_fields)
    return wire or None


def binding_context(binding: ToolBinding, body: Any) -> dict[str, Any]:
    context: dict[str, Any] = {}
    amount = value_at(body, binding.amount_field)
    if amount is not None:
        context["amount"] = amount
    currency = value_at(body, binding.currency_field) or binding.currency
    if currency is not None:
        context["currency"] = currency
    return context


def tool_redactions(
    binding: ToolBinding, limit: PermissionLimit | None
) -> tuple[tuple[str, str], ...]:
    rules = list(binding.redactions)
    if limit is not None:
        rules += [(path, "remove") for path in limit.redact_fields if (path, "remove") not in rules]
    return tuple(rules)


def unbound_verdict(policy: Policy, transport: str, name: str | None) -> Verdict:
    if policy.unbound_tools == "allow":
        return Verdict(
            "allowed", f"no binding for {transport} tool {name!r}; unbound tools are allowed"
        )
    return Verdict("denied", f"no binding for {transport} tool {name!r}; unbound tools are denied")


def covers_all(parent: Sequence[str], requested: Sequence[str]) -> str | None:
    """The first requested pattern the parent's patterns do not cover, or None."""
    from .._permissions import pattern_covers

    for child in requested:
        if not any(pattern_covers(p, child) for p in parent):
            return child
    return None
