"""A loaded policy: who may call, what they may do, and which tool call needs what.

Once loaded, a ``Policy`` only answers questions (which agent, which limit, which binding, is
this host allowed, what is this amount in the policy currency); deciding is the engine's job,
reading the file is ``_policy_load``'s. The lookups normalise their input themselves, so a
``Policy`` built directly in a test answers the same way as a parsed one. A path no binding
matches on a host that has bindings is not let through unchecked: that is ``unbound_paths``.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ._policy_match import (
    host_matches,
    http_rank,
    limit_rank,
    method_rank,
    normalize_host,
    normalize_request_path,
    path_regex,
    permission_matches,
)

__all__ = ["AgentPolicy", "PermissionLimit", "Policy", "ToolBinding", "Transport"]

Transport: TypeAlias = Literal["http", "mcp", "function"]


@dataclass(frozen=True)
class AgentPolicy:
    """One agent the platform knows, and how it may authenticate.

    Credentials are kept out of ``repr`` so a logged policy or agent never leaks them.
    ``llm_token_budget`` None means no budget: ``llm:call`` reservations are not counted.
    """

    agent_id: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    ingest_key: str | None = field(default=None, repr=False)
    disabled: bool = False
    permissions: tuple[str, ...] = ()
    llm_token_budget: int | None = None


@dataclass(frozen=True)
class PermissionLimit:
    """Limits on every permission ``permission`` (a pattern) grants, amounts in the policy currency.

    Only the most specific matching limit applies (see ``Policy.limit_for``), so a narrow limit
    can relax a broad one as well as tighten it.
    """

    permission: str
    max_amount: float | None = None
    require_approval_over: float | None = None
    redact_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolBinding:
    """Which permission a tool call needs, and what of its body matters to the decision.

    http: ``host`` is exact or ``*.example.com`` (any subdomain, not the domain itself);
    ``method`` is exact, case-insensitive, None for any; ``path`` is a glob where ``*`` matches
    within one path segment and ``**`` across segments, None for any path.
    mcp / function: ``name`` is the tool or function name, exact.
    ``amount_field`` / ``currency_field`` are redaction-style paths into the JSON body;
    ``currency`` is the fixed currency used when the body names none (None: the policy's).
    """

    transport: Transport
    permission: str
    host: str | None = None
    method: str | None = None
    path: str | None = None
    name: str | None = None
    amount_field: str | None = None
    currency_field: str | None = None
    currency: str | None = None
    redactions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Policy:
    """A checked policy, immutable, answering the engine's lookups."""

    currency: str
    # Excluded from the hash: a mapping is unhashable, and the other fields identify a policy.
    fx_rates: Mapping[str, float] = field(hash=False)
    approval_ttl_s: float
    token_ttl_s: int
    agents: tuple[AgentPolicy, ...]
    limits: tuple[PermissionLimit, ...]
    tools: tuple[ToolBinding, ...]
    egress_allowlist: tuple[str, ...]
    unbound_tools: Literal["allow", "deny"]
    #: what an allowlisted HTTP call gets when no binding matches it on a host that has bindings
    unbound_paths: Literal["allow", "deny"] = "deny"

    def agent(self, agent_id: str) -> AgentPolicy | None:
        """The agent with this id, disabled or not: the caller decides what disabled means."""
        return next((agent for agent in self.agents if agent.agent_id == agent_id), None)

    def agent_by_client_id(self, client_id: str) -> AgentPolicy | None:
        """The agent holding this client id; the caller still checks its secret."""
        if not client_id:
            return None
        return next((agent for agent in self.agents if agent.client_id == client_id), None)

    def agent_by_ingest_key(self, key: str) -> AgentPolicy | None:
        """The agent holding this ingest key.

        The key is a secret, so every agent's key is compared in constant time and the loop does
        not stop early: how long the lookup takes says nothing about how close a guess came.
        """
        if not isinstance(key, str) or not key:
            return None
        wanted = key.encode("utf-8", "surrogatepass")
        found: AgentPolicy | None = None
        for agent in self.agents:
            if agent.ingest_key is None:
                continue
            if hmac.compare_digest(agent.ingest_key.encode("utf-8", "surrogatepass"), wanted):
                found = found or agent
        return found

    def limit_for(self, permission: str) -> PermissionLimit | None:
        """The most specific limit granting ``permission``: exact, then the longest ``ns:*``,
        then ``*``; the first declared wins a tie, which parsing rules out anyway.

        Case is ignored here (and only here): an agent holding ``*`` that asks for
        ``PAYMENTS:REFUND`` is still held to the ``payments:refund`` limit.
        """
        wanted = permission.lower() if isinstance(permission, str) else ""
        best: PermissionLimit | None = None
        best_rank = (-1, -1)
        for limit in self.limits:
            pattern = limit.permission.lower()
            if not permission_matches(pattern, wanted):
                continue
            rank = limit_rank(pattern, wanted)
            if rank > best_rank:
                best, best_rank = limit, rank
        return best

    def http_binding(self, host: str, method: str, path: str) -> ToolBinding | None:
        """The binding for an HTTP call, or None when no binding matches.

        Several may match (``*.example.com`` and ``api.example.com``, ``/v1/**`` and
        ``/v1/refunds``); the most specific wins: an exact host over a wildcard one (a longer
        suffix over a shorter), then a path without wildcards over a glob (more literal
        characters over fewer) over no path, then the exact method over any method. A ``HEAD``
        matches a ``GET`` binding too (servers answer HEAD with the GET handler), below a
        ``HEAD`` binding.
        """
        clean_host = normalize_host(host)
        if clean_host is None:
            return None
        clean_method = method.strip().upper() if isinstance(method, str) else ""
        clean_path = normalize_request_path(path if isinstance(path, str) else "/")
        best: ToolBinding | None = None
        best_rank: tuple[int, ...] = ()
        for binding in self.tools:
            if binding.transport != "http" or binding.host is None:
                continue
            if not host_matches(binding.host, clean_host):
                continue
            bound_method = method_rank(binding.method, clean_method)
            if bound_method is None:
                continue
            if binding.path is not None and not path_regex(binding.path).fullmatch(clean_path):
                continue
            rank = (*http_rank(binding.host, binding.path), bound_method)
            if rank > best_rank:
                best, best_rank = binding, rank
        return best

    def host_has_bindings(self, host: str) -> bool:
        """True if some [[tools.http]] binding names ``host`` (exactly or by its wildcard)."""
        clean = normalize_host(host)
        return clean is not None and any(
            b.transport == "http" and b.host is not None and host_matches(b.host, clean)
            for b in self.tools
        )

    def tool_binding(self, transport: str, name: str) -> ToolBinding | None:
        """The binding for an MCP tool or an LLM function by its exact name; None for http."""
        kind = transport.strip().lower() if isinstance(transport, str) else ""
        if kind not in ("mcp", "function") or not name:
            return None
        return next(
            (b for b in self.tools if b.transport == kind and b.name == name),
            None,
        )

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` (case and port ignored) is on the egress allowlist."""
        clean = normalize_host(host)
        return clean is not None and any(
            host_matches(pattern, clean) for pattern in self.egress_allowlist
        )

    def fx_rate(self, currency: str | None) -> float | None:
        """Units of the policy currency per unit of ``currency`` (None: the policy's, 1)."""
        if currency is None:
            return 1.0
        if not isinstance(currency, str):
            return None
        code = currency.strip().upper()
        if code == self.currency.strip().upper():
            return 1.0
        return next((r for key, r in self.fx_rates.items() if key.strip().upper() == code), None)

    def to_policy_currency(self, amount: float, currency: str | None) -> float | None:
        """``amount`` in ``currency`` expressed in the policy currency.

        None currency means the amount is already in the policy currency. An unknown currency,
        or an amount that is not a finite number, gives None: such an amount cannot be compared
        with a limit, and the engine must not guess.
        """
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            return None
        try:
            value = float(amount)
        except OverflowError:
            return None
        if not math.isfinite(value):
            return None
        if currency is None:
            return value
        rate = self.fx_rate(currency)
        if rate is None:
            return None
        converted = value * rate
        return converted if math.isfinite(converted) else None
