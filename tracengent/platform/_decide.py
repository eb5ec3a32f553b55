"""Policy decisions, without I/O: what the platform answers to an authorize or a tool call.

The engine supplies what it read from the store (tokens already committed) and records the
outcome; everything here is a function of the policy, the request and that number, so each rule
is testable on its own and the served and embedded platforms cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import tracengent_api as api

from .._grammar.permissions import any_permission_matches, pattern_covers
from ._amounts import Unreadable, context_money, describe
from ._policy import AgentPolicy, PermissionLimit, Policy, ToolBinding
from ._wire import ESTIMATED_TOKENS, MAX_AMOUNT

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
    obligations: api.Obligations | None = None
    reserve_tokens: int | None = None
    redactions: tuple[tuple[str, str], ...] = ()
    limit: PermissionLimit | None = field(default=None, repr=False)

    @property
    def allowed(self) -> bool:
        return self.status == "allowed"


def _limits_needing_an_amount(
    policy: Policy, grant: Grant | None, limit: PermissionLimit | None
) -> list[str]:
    needs = []
    if grant is not None and grant.max_amount is not None:
        needs.append(
            f"grant {grant.grant_id} allows at most {grant.max_amount:g} {policy.currency}"
        )
    if limit is not None and limit.max_amount is not None:
        needs.append(f"max_amount {limit.max_amount:g} {policy.currency}")
    if limit is not None and limit.require_approval_over is not None:
        needs.append(f"approval over {limit.require_approval_over:g} {policy.currency}")
    return needs


def authorize(
    policy: Policy,
    agent: AgentPolicy,
    grant: Grant | None,
    permission: str,
    context: Mapping[str, Any],
    tokens_committed: int,
    *,
    amount_where: str = "context.amount",
) -> Verdict:
    """The authorize pipeline: permission, amount, limits, approval threshold, token budget.

    Missing is not unlimited: when a limit applies (the grant's maxAmount, the permission's
    max_amount or approval threshold) and the amount is missing or unreadable, the answer is a
    deny naming ``amount_where``; send 0 when nothing is spent. An ``llm:call`` without
    ``estimatedTokens`` reserves nothing (the llm_call event's usage still counts) and is
    allowed only while the agent's budget has room left.
    """
    if not any_permission_matches(agent.permissions, permission):
        return Verdict("denied", f"'{permission}' is not granted to agent {agent.agent_id}")
    if grant is not None and not any_permission_matches(grant.permissions, permission):
        return Verdict("denied", f"'{permission}' is outside delegated grant {grant.grant_id}")

    limit = policy.limit_for(permission)
    try:
        money = context_money(policy, context, amount_where)
    except Unreadable as unreadable:
        return Verdict("denied", unreadable.reason)
    needs = _limits_needing_an_amount(policy, grant, limit)
    if money is None:
        if needs:
            return Verdict(
                "denied",
                f"{amount_where} is missing, and '{permission}' is limited ({'; '.join(needs)}):"
                " a limit that cannot be checked denies; send the amount (0 if nothing is spent)",
            )
        amount = None
    else:
        amount = money.value
    if (
        grant is not None
        and grant.max_amount is not None
        and amount is not None
        and amount > grant.max_amount
    ):
        return Verdict(
            "denied",
            f"amount {amount:g} {policy.currency} exceeds the grant's {MAX_AMOUNT}"
            f" {grant.max_amount:g}",
        )

    if limit is not None and amount is not None:
        if limit.max_amount is not None and amount > limit.max_amount:
            return Verdict(
                "denied",
                f"amount {amount:g} {policy.currency} exceeds {MAX_AMOUNT} {limit.max_amount:g}",
            )
        if limit.require_approval_over is not None and amount > limit.require_approval_over:
            return Verdict(
                "pending_approval",
                f"amount {amount:g} {policy.currency} is over {limit.require_approval_over:g}: "
                "a person must approve",
                obligations(policy, limit),  # an approval lifts the hold, not the obligations
                limit=limit,
            )

    reserve = None
    if permission.lower() == "llm:call":  # "LLM:CALL" from an agent holding "*" too
        estimated = context.get(ESTIMATED_TOKENS)
        if estimated is not None and (
            isinstance(estimated, bool) or not isinstance(estimated, int) or estimated < 0
        ):
            return Verdict(
                "denied", f"{ESTIMATED_TOKENS} {estimated!r} is not a token count (0 or more)"
            )
        budget = agent.llm_token_budget
        if budget is not None and estimated is None and tokens_committed >= budget:
            return Verdict(
                "denied",
                f"token budget spent: {tokens_committed} committed >= budget {budget}",
            )
        if budget is not None and estimated is not None and tokens_committed + estimated > budget:
            return Verdict(
                "denied",
                f"token budget exceeded: {tokens_committed} committed + {estimated} requested "
                f"> budget {budget}",
            )
        reserve = estimated
    return Verdict("allowed", "ok", obligations(policy, limit), reserve, limit=limit)


def obligations(policy: Policy, limit: PermissionLimit | None) -> api.Obligations | None:
    """What an allow binds the caller to: the limit's amounts (in the policy currency) and the
    fields it must redact; None when the limit binds nothing."""
    if limit is None:
        return None
    amounts = limit.max_amount is not None or limit.require_approval_over is not None
    if not amounts and not limit.redact_fields:
        return None
    return api.Obligations(
        max_amount=limit.max_amount,
        require_approval_over=limit.require_approval_over,
        currency=policy.currency if amounts else None,
        redact_fields=list(limit.redact_fields) or None,
    )


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
    for child in requested:
        if not any(pattern_covers(p, child) for p in parent):
            return child
    return None


_METHOD_OVERRIDES: Final = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)


def method_conflict(
    method: str, headers: Mapping[str, str] | None, query: Mapping[str, str] | None, body: Any
) -> str | None:
    """Where an HTTP call names a method other than its own, or None.

    Many frameworks route a request by an ``X-HTTP-Method-Override`` header (or its two
    cousins) or a ``_method`` parameter instead of its method, so ``POST`` + ``_method=DELETE``
    may reach the DELETE handler. The platform cannot know which one the server honours.
    """
    wanted = method.strip().upper()
    for name, value in (headers or {}).items():
        if name.strip().lower() in _METHOD_OVERRIDES and value.strip().upper() != wanted:
            return f"the {name} header says {describe(value.strip())}"
    for source, params in (("query", query), ("body", body)):
        if isinstance(params, Mapping) and "_method" in params:
            value = params["_method"]
            if not isinstance(value, str) or value.strip().upper() != wanted:
                return f"the {source}'s _method is {describe(value)}"
    return None


def unbound_http_verdict(policy: Policy, host: str, method: str, path: str) -> Verdict:
    """An allowlisted HTTP call no binding matches.

    On a host no binding names it is allowed (the allowlist is the whole policy for that host).
    On a host with bound endpoints, a path outside them would otherwise pass unchecked: a new
    endpoint, or a spelling the policy did not foresee, so it is denied unless the policy says
    ``unbound_paths = "allow"``.
    """
    call = f"{method.strip().upper() or '?'} {path or '/'}"
    if not policy.host_has_bindings(host):
        return Verdict("allowed", f"host {host} is on the egress allowlist")
    if policy.unbound_paths == "allow":
        return Verdict(
            "allowed", f"no policy binding for {call} on {host}; unbound paths are allowed"
        )
    return Verdict(
        "denied",
        f"no policy binding for {call} on {host}, which has bound endpoints: add a"
        ' [[tools.http]] binding for it, or set unbound_paths = "allow"',
    )
