"""The local platform's policy: who may call, what they may do, and which tool call needs what.

A policy is a TOML document (``DEFAULT_POLICY_TOML`` is the commented reference). It is read
once, at start, and checked as a whole: a policy that does not parse, or that names something it
never declares, must stop the platform there with every problem listed, not surface later as a
puzzling ``denied`` in the middle of a demo. So parsing collects problems instead of stopping at
the first, and each one names the key path (``agents[1].permissions[0]``) or, for a TOML syntax
error, the line, together with how to fix it.

Once loaded, a ``Policy`` only answers questions (which agent, which limit, which binding, is
this host allowed, what is this amount in the policy currency); deciding is the engine's job.
The lookups normalise their input themselves, so a ``Policy`` built directly in a test answers
the same way as a parsed one. Matching errs towards governing: a request path is matched in
the form a server would route it by (see ``_normalize_request_path``), so ``/V1//refunds/``,
``/v1/refunds;jsessionid=1`` or ``/v1/x/../%72efunds`` cannot slip past a ``/v1/refunds``
binding, and a path no binding matches on a host that has bindings is not let through unchecked
(``unbound_paths``).
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import unquote

from .._permissions import pattern_covers, permission_matches
from .._redaction import _parse_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "DEFAULT_POLICY_TOML",
    "AgentPolicy",
    "PermissionLimit",
    "Policy",
    "PolicyError",
    "ToolBinding",
    "default_policy",
    "load_policy",
    "parse_policy",
]

Transport: TypeAlias = Literal["http", "mcp", "function"]


class PolicyError(ValueError):
    """A policy that cannot be used: unreadable, not TOML, or inconsistent.

    The message is meant for a person at a terminal: it names the file, then each problem on its
    own line with the key path or line it concerns and how to fix it. ``problems`` holds the
    same lines for code (one entry for a syntax or file error).
    """

    def __init__(self, message: str, *, source: str = "", problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


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
            rank = _limit_rank(pattern, wanted)
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
        clean_host = _normalize_host(host)
        if clean_host is None:
            return None
        clean_method = method.strip().upper() if isinstance(method, str) else ""
        clean_path = _normalize_request_path(path if isinstance(path, str) else "/")
        best: ToolBinding | None = None
        best_rank: tuple[int, ...] = ()
        for binding in self.tools:
            if binding.transport != "http" or binding.host is None:
                continue
            if not _host_matches(binding.host, clean_host):
                continue
            method_rank = _method_rank(binding.method, clean_method)
            if method_rank is None:
                continue
            if binding.path is not None and not _path_regex(binding.path).fullmatch(clean_path):
                continue
            rank = (*_http_rank(binding), method_rank)
            if rank > best_rank:
                best, best_rank = binding, rank
        return best

    def host_has_bindings(self, host: str) -> bool:
        """True if some [[tools.http]] binding names ``host`` (exactly or by its wildcard)."""
        clean = _normalize_host(host)
        return clean is not None and any(
            b.transport == "http" and b.host is not None and _host_matches(b.host, clean)
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
        clean = _normalize_host(host)
        return clean is not None and any(
            _host_matches(pattern, clean) for pattern in self.egress_allowlist
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
        if not isinstance(currency, str):
            return None
        code = currency.strip().upper()
        if code == self.currency.strip().upper():
            return value
        rate = next((r for key, r in self.fx_rates.items() if key.strip().upper() == code), None)
        if rate is None:
            return None
        converted = value * rate
        return converted if math.isfinite(converted) else None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy ``text`` declares; PolicyError listing every problem when it is not usable."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(_syntax_message(source, text, exc), source=source) from exc
    reader = _Reader()
    policy = _read_policy(reader, document)
    if reader.problems or policy is None:
        count = len(reader.problems)
        header = (
            f"{source}: the policy is invalid ({count} problem{'' if count == 1 else 's'}); "
            "fix each key below:"
        )
        raise PolicyError(
            "\n".join([header, *(f"  {problem}" for problem in reader.problems)]),
            source=source,
            problems=reader.problems,
        )
    return policy


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy in the file at ``path`` (UTF-8 TOML); PolicyError also when it cannot be read."""
    source = os.fsdecode(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        message = (
            f"{source}: policy file not found; check the path, or omit it to use the built-in "
            "policy"
        )
        raise PolicyError(message, source=source) from None
    except UnicodeDecodeError as exc:
        message = f"{source}: the policy file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise PolicyError(message, source=source) from None
    except OSError as exc:
        message = f"{source}: cannot read the policy file: {exc.strerror or exc}"
        raise PolicyError(message, source=source) from None
    return parse_policy(text, source)


def default_policy() -> Policy:
    """The built-in demo policy."""
    return parse_policy(DEFAULT_POLICY_TOML, "<built-in policy>")


DEFAULT_POLICY_TOML: Final = """\
# Tracengent local platform policy.
#
# This is the built-in demo policy, and the reference for the format: every key the platform
# reads is shown and explained here. A key it does not know is rejected, so a typo fails at start
# instead of being silently ignored. Point the platform at your own file to replace it.

# The currency every amount limit is written in (3-letter ISO 4217 code). An amount sent in
# another currency is converted with [fx_rates] first; one in a currency without a rate is not
# comparable with any limit.
currency = "EUR"

# Seconds a pending human approval waits before it expires. Optional, default 600.
approval_ttl_seconds = 600

# Lifetime, in whole seconds, of the access tokens POST /v1/oauth/token issues.
# Optional, default 900.
token_ttl_seconds = 900

# What an MCP tool or LLM function call gets when no [[tools.mcp]] / [[tools.function]] binding
# names it: "deny" (fail closed) or "allow". Optional, default "deny".
unbound_tools = "deny"

# What an HTTP call gets when its host has [[tools.http]] bindings but none of them matches its
# method and path (a new endpoint, or a spelling no binding foresaw): "deny" (fail closed) or
# "allow" (allowed without a permission check, as on a host no binding names). To govern the
# other paths of a host by one permission instead, add a binding for that host without `path`.
# Optional, default "deny".
unbound_paths = "deny"

# Hosts an HTTP tool call may reach; any other host is refused ("egress_deny"). Each entry is an
# exact host name or IP address, or "*.example.com" for every subdomain of example.com (but not
# example.com itself). Matching ignores case and the port. Optional, default: no host at all.
egress_allowlist = [
    "api.stripe.com",
    "api.example.com",
    "*.tracengent.test",
    "localhost",
    "127.0.0.1",
]

# Exchange rates into `currency`: 1 unit of the key currency = this many units of `currency`.
# `currency` itself is always 1. Optional.
[fx_rates]
USD = 0.92
GBP = 1.17
CHF = 1.04

# One [[agents]] table per agent. An agent signs in with client credentials (client_id and
# client_secret, exchanged at POST /v1/oauth/token), with an ingest key (the X-Ingest-Key
# header), or both; it needs at least one of the two. Ids, client ids and ingest keys are unique.
[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
ingest_key = "agk_demo"
# true refuses the agent's credentials (401) while keeping its history. Optional, default false.
disabled = false
# Permission patterns the agent holds: an exact name ("llm:call"), a namespace ("flights:*"
# grants "flights:book", not "flightsx:book"), or "*" for everything. Optional, default none.
permissions = ["flights:*", "hotels:*", "payments:*", "llm:call"]
# Total tokens this agent's "llm:call" authorizations may reserve (estimatedTokens); a reservation
# is reconciled with the llm_call event's usage.tokens. Optional, default: no budget.
llm_token_budget = 50000

# The agent the demo delegates "hotels:*" to. A delegated call is decided on the intersection of
# this base policy and the grant.
[[agents]]
id = "agt_hotel"
ingest_key = "agk_hotel"
permissions = ["hotels:*"]

# Limits on what a permission pattern grants. For a given permission only the most specific
# matching [[limits]] applies: an exact name, else the longest "ns:*", else "*".
#   max_amount             an amount above it is denied (in `currency`, after conversion)
#   require_approval_over  an amount above it waits for a human approval
#   redact_fields          fields the caller must scrub before sending (redaction paths:
#                          "$.card", "$.customer.email", "$.items[*].pan")
# All three are optional; a permission can only be limited if some agent may hold it.
[[limits]]
permission = "payments:refund"
max_amount = 1000
require_approval_over = 300
redact_fields = ["$.card"]

[[limits]]
permission = "payments:*"
max_amount = 5000
require_approval_over = 2500

# Tool bindings: which permission a governed tool call needs, and where its amount is.
# Every binding has `permission` (one exact permission that some agent may hold) and, optionally:
#   amount_field    path to the amount in the JSON body or arguments ("$.amount")
#   currency_field  path to that amount's currency in the body ("$.currency")
#   currency        the currency when the body names none (default: `currency` above)
#   redactions      fields scrubbed from the body before it is sent, each
#                   { field = "<path>", strategy = "remove" | "mask" } (strategy default "remove")
#
# HTTP: `host` (required; exact or "*.example.com", and on egress_allowlist), `method`
# (optional, any case; default any method) and `path` (optional; default any path), a glob where
# "*" matches within one path segment and "**" across segments. The request path is matched the
# way servers route it: without its query, percent-decoded, ignoring case, ";params" in a segment
# and "\\" as "/", with "//", "." and ".." and a trailing "/" resolved; a HEAD request also
# matches a GET binding. When several bindings match, the most specific wins. An allowlisted call
# no binding matches is allowed without a permission check when no binding names its host, and
# otherwise decided by `unbound_paths`.
[[tools.http]]
host = "api.stripe.com"
method = "POST"
path = "/v1/refunds"
permission = "payments:refund"
amount_field = "$.amount"
currency_field = "$.currency"
redactions = [{ field = "$.card", strategy = "remove" }]

[[tools.http]]
host = "api.stripe.com"
method = "POST"
path = "/v1/charges"
permission = "payments:charge"
amount_field = "$.amount"
currency_field = "$.currency"

[[tools.http]]
host = "*.tracengent.test"
method = "POST"
path = "/v1/flights/*/book"
permission = "flights:book"

# MCP tools and LLM function calls, by exact `name`.
[[tools.mcp]]
name = "search_flights"
permission = "flights:search"

[[tools.mcp]]
name = "book_flight"
permission = "flights:book"

[[tools.function]]
name = "transfer_funds"
permission = "payments:transfer"
amount_field = "$.amount"
currency = "EUR"
"""


# --- reading and checking a parsed document --------------------------------------------------

_Table: TypeAlias = dict[str, Any]

_TOP_KEYS: Final = (
    "currency",
    "approval_ttl_seconds",
    "token_ttl_seconds",
    "unbound_tools",
    "unbound_paths",
    "egress_allowlist",
    "fx_rates",
    "agents",
    "limits",
    "tools",
)
_AGENT_KEYS: Final = (
    "id",
    "client_id",
    "client_secret",
    "ingest_key",
    "disabled",
    "permissions",
    "llm_token_budget",
)
_LIMIT_KEYS: Final = ("permission", "max_amount", "require_approval_over", "redact_fields")
_TRANSPORTS: Final = ("http", "mcp", "function")
_BINDING_COMMON_KEYS: Final = (
    "permission",
    "amount_field",
    "currency_field",
    "currency",
    "redactions",
)
_BINDING_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "http": ("host", "method", "path", *_BINDING_COMMON_KEYS),
    "mcp": ("name", *_BINDING_COMMON_KEYS),
    "function": ("name", *_BINDING_COMMON_KEYS),
}
_REDACTION_KEYS: Final = ("field", "strategy")
_STRATEGIES: Final = ("remove", "mask")

_DEFAULT_APPROVAL_TTL_S: Final = 600.0
_DEFAULT_TOKEN_TTL_S: Final = 900

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_CREDENTIAL = re.compile(r"[!-~]+")  # visible ASCII: it travels in a header or a form field
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_HOST_HELP: Final = (
    'use a host name ("api.example.com"), "*.example.com" for its subdomains, '
    "or an IP address — no scheme, port or path"
)
_PATTERN_HELP: Final = (
    'use an exact name ("flights:book"), a namespace ("flights:*") or "*" for everything'
)


class _Reader:
    """Typed access to a parsed TOML table that records problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {message}")

    def check_keys(self, table: _Table, path: str, allowed: Sequence[str]) -> None:
        for key in table:
            if key in allowed:
                continue
            guess = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            where = f"in {path}" if path else "at the top level"
            self.add(
                _join(path, key),
                f"unknown key{hint}; the keys allowed {where} are: {', '.join(allowed)}",
            )

    def text(
        self, table: _Table, key: str, path: str, *, required: str | None = None
    ) -> str | None:
        """A non-empty string; ``required`` is the hint given when the key is missing."""
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            if required is not None:
                self.add(where, f"missing; {required}")
            return None
        if not isinstance(value, str):
            self.add(where, f"expected a string, got {_describe(value)}")
            return None
        if not value.strip():
            self.add(where, "must not be empty")
            return None
        return value

    def number(self, table: _Table, key: str, path: str, *, positive: bool) -> float | None:
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(where, f"expected a number, got {_describe(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.add(where, f"must be a finite number, got {_describe(value)}")
        elif positive and number <= 0:
            self.add(where, f"must be greater than 0, got {_describe(value)}")
        elif number < 0:
            self.add(where, f"must not be negative, got {_describe(value)}")
        else:
            return number
        return None

    def integer(self, table: _Table, key: str, path: str, *, minimum: int) -> int | None:
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(where, f"expected a whole number, got {_describe(value)}")
            return None
        if value < minimum:
            self.add(where, f"must be at least {minimum}, got {_describe(value)}")
            return None
        return value

    def boolean(self, table: _Table, key: str, path: str) -> bool | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.add(_join(path, key), f"expected true or false, got {_describe(value)}")
            return None
        return value

    def strings(self, table: _Table, key: str, path: str) -> list[tuple[str, str]]:
        """The strings of an array, each with its own key path; wrong entries are reported."""
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(where, f'expected an array of strings (["…"]), got {_describe(value)}')
            return []
        items: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            item_path = f"{where}[{index}]"
            if not isinstance(item, str):
                self.add(item_path, f"expected a string, got {_describe(item)}")
            elif not item.strip():
                self.add(item_path, "must not be empty")
            else:
                items.append((item_path, item))
        return items

    def table(self, table: _Table, key: str, path: str) -> _Table | None:
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(where, f"expected a table ([{where}]), got {_describe(value)}")
            return None
        return value

    def tables(self, table: _Table, key: str, path: str) -> list[tuple[str, _Table]]:
        """The tables of an array of tables (``[[key]]``), each with its key path."""
        where = _join(path, key)
        value = table.get(key)
        if value is None:
            return []
        if isinstance(value, dict):
            self.add(where, f"expected an array of tables: write [[{where}]], not [{where}]")
            return []
        if not isinstance(value, list):
            self.add(where, f"expected an array of tables ([[{where}]]), got {_describe(value)}")
            return []
        items: list[tuple[str, _Table]] = []
        for index, item in enumerate(value):
            item_path = f"{where}[{index}]"
            if isinstance(item, dict):
                items.append((item_path, item))
            else:
                self.add(item_path, f"expected a table ([[{where}]]), got {_describe(item)}")
        return items


def _read_policy(r: _Reader, doc: _Table) -> Policy | None:
    r.check_keys(doc, "", _TOP_KEYS)

    currency = _read_currency_code(
        r, doc, "currency", "", required='every policy names its currency, e.g. currency = "EUR"'
    )
    fx_rates = _read_fx_rates(r, doc, currency)
    known_currencies = None if currency is None else frozenset({currency, *fx_rates})

    approval_ttl = r.number(doc, "approval_ttl_seconds", "", positive=True)
    token_ttl = r.integer(doc, "token_ttl_seconds", "", minimum=1)

    unbound = _read_allow_or_deny(r, doc, "unbound_tools")
    unbound_paths = _read_allow_or_deny(r, doc, "unbound_paths")

    allowlist = _read_host_patterns(r, doc, "egress_allowlist")

    agents = [(p, _read_agent(r, t, p)) for p, t in r.tables(doc, "agents", "")]
    if "agents" not in doc or not doc["agents"]:
        r.add("agents", "no agent declared; add at least one [[agents]] table")
    limits = [(p, lim) for p, t in r.tables(doc, "limits", "") if (lim := _read_limit(r, t, p))]
    bindings = _read_tools(r, doc, allowlist, known_currencies)

    _check_unique_agents(r, agents)
    _check_references(r, [a for _, a in agents], limits, bindings, allowlist)

    if currency is None:
        return None
    return Policy(
        currency=currency,
        fx_rates=MappingProxyType(dict(fx_rates)),
        approval_ttl_s=_DEFAULT_APPROVAL_TTL_S if approval_ttl is None else approval_ttl,
        token_ttl_s=_DEFAULT_TOKEN_TTL_S if token_ttl is None else token_ttl,
        agents=tuple(a for _, a in agents),
        limits=tuple(lim for _, lim in limits),
        tools=tuple(b for _, b in bindings),
        egress_allowlist=tuple(pattern for _, pattern in allowlist),
        unbound_tools=unbound,
        unbound_paths=unbound_paths,
    )


def _read_allow_or_deny(r: _Reader, doc: _Table, key: str) -> Literal["allow", "deny"]:
    text = r.text(doc, key, "")
    if text is None or text.strip().lower() == "deny":
        return "deny"
    if text.strip().lower() == "allow":
        return "allow"
    r.add(key, f'must be "allow" or "deny", got {_describe(text)}')
    return "deny"


def _read_currency_code(
    r: _Reader, table: _Table, key: str, path: str, *, required: str | None = None
) -> str | None:
    code = r.text(table, key, path, required=required)
    if code is None:
        return None
    if not _CURRENCY.fullmatch(code.strip()):
        r.add(
            _join(path, key),
            f'{_quote(code)} is not a 3-letter currency code; use one like "EUR" or "USD"',
        )
        return None
    return code.strip().upper()


def _read_fx_rates(r: _Reader, doc: _Table, currency: str | None) -> dict[str, float]:
    table = r.table(doc, "fx_rates", "")
    rates: dict[str, float] = {}
    if table is None:
        return rates
    for key in table:
        path = _join("fx_rates", key)
        if not _CURRENCY.fullmatch(key.strip()):
            r.add(path, f"{_quote(key)} is not a 3-letter currency code; use one like USD")
            continue
        rate = r.number(table, key, "fx_rates", positive=True)
        if rate is None:
            continue
        code = key.strip().upper()
        if code in rates:
            r.add(path, f"{code} has a rate already (codes ignore case); keep one")
        elif code == currency and rate != 1:
            r.add(path, f"{code} is the policy currency, always 1; remove this rate")
        elif code != currency:
            rates[code] = rate
    return rates


def _read_host_patterns(r: _Reader, doc: _Table, key: str) -> list[tuple[str, str]]:
    patterns: list[tuple[str, str]] = []
    for path, pattern in r.strings(doc, key, ""):
        clean = _normalize_host_pattern(pattern)
        if clean is None:
            r.add(path, f"{_quote(pattern)} is not a host pattern; {_HOST_HELP}")
        else:
            patterns.append((path, clean))
    return patterns


def _read_agent(r: _Reader, table: _Table, path: str) -> AgentPolicy:
    r.check_keys(table, path, _AGENT_KEYS)
    agent_id = r.text(table, "id", path, required='every agent needs one, e.g. id = "my-agent"')
    if agent_id is not None and agent_id != agent_id.strip():
        r.add(_join(path, "id"), "must not start or end with spaces")
    client_id = _read_credential(r, table, "client_id", path)
    client_secret = _read_credential(r, table, "client_secret", path)
    ingest_key = _read_credential(r, table, "ingest_key", path)
    if "client_id" in table and "client_secret" not in table:
        r.add(_join(path, "client_secret"), "missing; a client_id needs its client_secret")
    if "client_secret" in table and "client_id" not in table:
        r.add(_join(path, "client_id"), "missing; a client_secret needs its client_id")
    if not any(key in table for key in ("client_id", "client_secret", "ingest_key")):
        r.add(
            path,
            "the agent has no credentials; set client_id and client_secret, or ingest_key, or both",
        )
    disabled = r.boolean(table, "disabled", path)
    permissions: list[str] = []
    for item_path, pattern in r.strings(table, "permissions", path):
        problem = _pattern_problem(pattern)
        if problem is None:
            permissions.append(pattern)
        else:
            r.add(item_path, problem)
    budget = r.integer(table, "llm_token_budget", path, minimum=0)
    # Kept even without a usable id (the problem is recorded), so that the limits and bindings
    # using its permissions are not reported as unknown on top.
    return AgentPolicy(
        agent_id=agent_id or "",
        client_id=client_id,
        client_secret=client_secret,
        ingest_key=ingest_key,
        disabled=bool(disabled),
        permissions=tuple(permissions),
        llm_token_budget=budget,
    )


def _read_credential(r: _Reader, table: _Table, key: str, path: str) -> str | None:
    value = r.text(table, key, path)
    if value is not None and not _CREDENTIAL.fullmatch(value):
        # The value is deliberately not echoed: it is (or sits next to) a secret.
        r.add(
            _join(path, key),
            "must be printable ASCII without spaces (it travels in an HTTP header or form)",
        )
        return None
    return value


def _read_limit(r: _Reader, table: _Table, path: str) -> PermissionLimit | None:
    r.check_keys(table, path, _LIMIT_KEYS)
    permission = r.text(
        table, "permission", path, required='every limit names one, e.g. permission = "payments:*"'
    )
    if permission is not None and (problem := _pattern_problem(permission)) is not None:
        r.add(_join(path, "permission"), problem)
        permission = None
    max_amount = r.number(table, "max_amount", path, positive=False)
    approval_over = r.number(table, "require_approval_over", path, positive=False)
    if max_amount is not None and approval_over is not None and approval_over >= max_amount:
        r.add(
            _join(path, "require_approval_over"),
            f"is {approval_over:g}, not below max_amount {max_amount:g}: amounts above max_amount "
            "are denied, so no approval would ever be asked; lower it or raise max_amount",
        )
    fields = [
        field_path
        for item_path, field_path in r.strings(table, "redact_fields", path)
        if _check_field_path(r, item_path, field_path, single=False)
    ]
    if permission is None:
        return None
    return PermissionLimit(
        permission=permission,
        max_amount=max_amount,
        require_approval_over=approval_over,
        redact_fields=tuple(fields),
    )


def _read_tools(
    r: _Reader,
    doc: _Table,
    allowlist: list[tuple[str, str]],
    known_currencies: frozenset[str] | None,
) -> list[tuple[str, ToolBinding]]:
    tools = r.table(doc, "tools", "")
    if tools is None:
        return []
    for key in tools:
        if key not in _TRANSPORTS:
            guess = difflib.get_close_matches(key, _TRANSPORTS, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            r.add(
                _join("tools", key),
                f"unknown transport{hint}; bindings go under [[tools.http]], [[tools.mcp]] "
                "or [[tools.function]]",
            )
    bindings: list[tuple[str, ToolBinding]] = []
    for transport in _TRANSPORTS:
        for path, table in r.tables(tools, transport, "tools"):
            binding = _read_binding(r, transport, table, path, known_currencies)
            if binding is not None:
                bindings.append((path, binding))
    _check_unique_bindings(r, bindings)
    _check_binding_hosts(r, bindings, allowlist)
    return bindings


def _read_binding(
    r: _Reader,
    transport: str,
    table: _Table,
    path: str,
    known_currencies: frozenset[str] | None,
) -> ToolBinding | None:
    r.check_keys(table, path, _BINDING_KEYS[transport])
    ok = True
    permission = r.text(
        table, "permission", path, required='every binding needs one, e.g. permission = "ns:action"'
    )
    if permission is not None:
        problem = _pattern_problem(permission)
        if problem is None and "*" in permission:
            problem = (
                f"a binding needs one exact permission, not the pattern {_quote(permission)}; "
                'name the action, e.g. "payments:refund"'
            )
        if problem is not None:
            r.add(_join(path, "permission"), problem)
            permission = None

    host = method = glob = name = None
    if transport == "http":
        host_text = r.text(
            table, "host", path, required='every HTTP binding needs one, e.g. host = "api.x.com"'
        )
        if host_text is not None:
            host = _normalize_host_pattern(host_text)
            if host is None:
                r.add(_join(path, "host"), f"{_quote(host_text)} is not a host; {_HOST_HELP}")
        ok = ok and host is not None
        method_text = r.text(table, "method", path)
        if method_text is not None:
            if _METHOD.fullmatch(method_text.strip()):
                method = method_text.strip().upper()
            else:
                r.add(_join(path, "method"), f"{_quote(method_text)} is not an HTTP method")
        glob_text = r.text(table, "path", path)
        if glob_text is not None:
            problem = _path_pattern_problem(glob_text)
            if problem is None:
                glob = _clean_segments(glob_text)
            else:
                r.add(_join(path, "path"), problem)
    else:
        name = r.text(
            table, "name", path, required=f"every {transport} binding needs the tool name it binds"
        )
        ok = ok and name is not None

    amount_field = r.text(table, "amount_field", path)
    if amount_field is not None and not _check_field_path(
        r, _join(path, "amount_field"), amount_field, single=True
    ):
        amount_field = None
    currency_field = r.text(table, "currency_field", path)
    if currency_field is not None and not _check_field_path(
        r, _join(path, "currency_field"), currency_field, single=True
    ):
        currency_field = None
    currency = _read_currency_code(r, table, "currency", path)
    if currency is not None and known_currencies is not None and currency not in known_currencies:
        r.add(
            _join(path, "currency"),
            f"unknown currency {_quote(currency)}: add a rate for it under [fx_rates], or use the "
            "policy currency",
        )
    for key in ("currency_field", "currency"):
        if key in table and "amount_field" not in table:
            r.add(_join(path, key), "a currency without amount_field means nothing; add one")

    redactions = _read_redactions(r, table, path)
    if permission is None or not ok:
        return None
    return ToolBinding(
        transport=_as_transport(transport),
        permission=permission,
        host=host,
        method=method,
        path=glob,
        name=name,
        amount_field=amount_field,
        currency_field=currency_field,
        currency=currency,
        redactions=tuple(redactions),
    )


def _read_redactions(r: _Reader, table: _Table, path: str) -> list[tuple[str, str]]:
    rules: list[tuple[str, str]] = []
    for item_path, item in r.tables(table, "redactions", path):
        r.check_keys(item, item_path, _REDACTION_KEYS)
        field_path = r.text(
            item, "field", item_path, required='name the field, e.g. field = "$.card"'
        )
        if field_path is not None and not _check_field_path(
            r, _join(item_path, "field"), field_path, single=False
        ):
            field_path = None
        strategy = "remove"
        strategy_text = r.text(item, "strategy", item_path)
        if strategy_text is not None:
            strategy = strategy_text.strip().lower()
            if strategy not in _STRATEGIES:
                r.add(
                    _join(item_path, "strategy"),
                    f'must be "remove" or "mask", got {_describe(strategy_text)}',
                )
                continue
        if field_path is not None:
            rules.append((field_path, strategy))
    return rules


def _check_field_path(r: _Reader, path: str, field_path: str, *, single: bool) -> bool:
    """True if ``field_path`` is a redaction-style path (one field only when ``single``)."""
    segments = _parse_path(field_path)
    if segments is None:
        r.add(
            path,
            f'{_quote(field_path)} is not a field path; write it like "$.card", '
            '"$.customer.email" or "$.items[0].pan"',
        )
        return False
    if single and not all(isinstance(segment, (str, int)) for segment in segments):
        r.add(path, f"{_quote(field_path)} must name one field; a wildcard selects several")
        return False
    return True


def _check_unique_agents(r: _Reader, agents: list[tuple[str, AgentPolicy]]) -> None:
    seen_ids: dict[str, str] = {}
    seen_clients: dict[str, str] = {}
    seen_keys: dict[str, str] = {}
    for path, agent in agents:
        if not agent.agent_id:  # reported as missing already
            pass
        elif agent.agent_id in seen_ids:
            r.add(
                _join(path, "id"),
                f"duplicate agent id {_quote(agent.agent_id)} (also {seen_ids[agent.agent_id]});"
                " give each agent its own id",
            )
        else:
            seen_ids[agent.agent_id] = _join(path, "id")
        if agent.client_id is not None:
            if agent.client_id in seen_clients:
                r.add(
                    _join(path, "client_id"),
                    f"duplicate client id {_quote(agent.client_id)} (also "
                    f"{seen_clients[agent.client_id]}); give each agent its own",
                )
            else:
                seen_clients[agent.client_id] = _join(path, "client_id")
        if agent.ingest_key is not None:
            # Not echoed: a key is a secret, the other path is enough to find it.
            if agent.ingest_key in seen_keys:
                r.add(
                    _join(path, "ingest_key"),
                    f"the same ingest key as {seen_keys[agent.ingest_key]}; "
                    "give each agent its own",
                )
            else:
                seen_keys[agent.ingest_key] = _join(path, "ingest_key")


def _check_unique_bindings(r: _Reader, bindings: list[tuple[str, ToolBinding]]) -> None:
    seen: dict[tuple[str | None, ...], str] = {}
    for path, binding in bindings:
        if binding.transport == "http":
            key: tuple[str | None, ...] = ("http", binding.host, binding.method, binding.path)
            what = "the same host, method and path as"
        else:
            key = (binding.transport, binding.name)
            what = "the same name as"
        if key in seen:
            r.add(path, f"binds {what} {seen[key]}; keep one of them")
        else:
            seen[key] = path


def _check_binding_hosts(
    r: _Reader, bindings: list[tuple[str, ToolBinding]], allowlist: list[tuple[str, str]]
) -> None:
    for path, binding in bindings:
        if binding.host is None:
            continue
        if not any(_host_pattern_covers(allowed, binding.host) for _, allowed in allowlist):
            r.add(
                _join(path, "host"),
                f"{_quote(binding.host)} is not on egress_allowlist, so its calls are refused before this "
                "binding applies; add it to egress_allowlist",
            )


def _check_references(
    r: _Reader,
    agents: list[AgentPolicy],
    limits: list[tuple[str, PermissionLimit]],
    bindings: list[tuple[str, ToolBinding]],
    allowlist: list[tuple[str, str]],
) -> None:
    """Limits and bindings may only speak of permissions some agent can hold."""
    granted = [pattern for agent in agents for pattern in agent.permissions]
    seen: dict[str, str] = {}
    for path, limit in limits:
        where = _join(path, "permission")
        if limit.permission in seen:
            r.add(
                where,
                f"{_quote(limit.permission)} is limited already in {seen[limit.permission]}; merge the two",
            )
        else:
            seen[limit.permission] = where
        if not any(_patterns_overlap(g, limit.permission) for g in granted):
            r.add(
                where,
                f"references unknown permission {_quote(limit.permission)}: no agent's permissions "
                "include it; grant it to an agent or fix the name",
            )
    for path, binding in bindings:
        if not any(permission_matches(g, binding.permission) for g in granted):
            r.add(
                _join(path, "permission"),
                f"references unknown permission {_quote(binding.permission)}: no agent's permissions "
                "include it; grant it to an agent or fix the name",
            )


# --- matching ---------------------------------------------------------------------------------


def _pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a permission pattern, or None when it is one."""
    if pattern == "*":
        return None
    name = pattern.removesuffix(":*")
    if not name or "*" in name or any(char.isspace() for char in pattern):
        return f"{_quote(pattern)} is not a permission pattern; {_PATTERN_HELP}"
    return None


def _patterns_overlap(first: str, second: str) -> bool:
    # With exact names, "ns:*" and "*" only, two patterns share a permission iff one covers the
    # other: a limit on "payments:*" concerns an agent holding "payments:refund", and vice versa.
    return pattern_covers(first, second) or pattern_covers(second, first)


def _limit_rank(pattern: str, permission: str) -> tuple[int, int]:
    if pattern == permission:
        return (2, len(pattern))
    if pattern == "*":
        return (0, 0)
    return (1, len(pattern))


def _normalize_host(host: str) -> str | None:
    """``host`` lowercased, without port, brackets or a trailing dot; None if not a host."""
    if not isinstance(host, str):
        return None
    text = host.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.removesuffix(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    return text if _HOST_NAME.fullmatch(text) else None


def _normalize_host_pattern(pattern: str) -> str | None:
    """A host pattern in canonical form, or None when it is not one (a port is refused)."""
    text = pattern.strip().lower()
    if text.startswith("*."):
        rest = text[2:].removesuffix(".")
        return f"*.{rest}" if _HOST_NAME.fullmatch(rest) else None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.removesuffix(".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    return text if _HOST_NAME.fullmatch(text) else None


def _host_matches(pattern: str, host: str) -> bool:
    """``host`` (already normalised) against a host pattern."""
    clean = _normalize_host_pattern(pattern)
    if clean is None:
        return False
    if clean.startswith("*."):
        suffix = clean[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == clean


def _host_pattern_covers(allowed: str, pattern: str) -> bool:
    """True if every host ``pattern`` matches is matched by ``allowed`` too."""
    if allowed.startswith("*."):
        suffix = allowed[1:]
        return pattern.endswith(suffix) and (len(pattern) > len(suffix) or pattern == allowed)
    return pattern == allowed


def _http_rank(binding: ToolBinding) -> tuple[int, ...]:
    host = binding.host or ""
    if binding.path is None:
        path_rank = (0, 0, 0)
    else:
        path_rank = (1, 0 if "*" in binding.path else 1, len(binding.path.replace("*", "")))
    return (0 if host.startswith("*.") else 1, len(host), *path_rank)


def _method_rank(bound: str | None, method: str) -> int | None:
    """How well a binding's method fits the request's (higher is closer); None: it does not."""
    if bound is None:
        return 0
    clean = bound.strip().upper()
    if clean == method:
        return 2
    if clean == "GET" and method == "HEAD":
        return 1
    return None


def _path_pattern_problem(pattern: str) -> str | None:
    if not pattern.startswith("/"):
        return f'{_quote(pattern)} must start with "/", e.g. "/v1/refunds"'
    if any(char.isspace() for char in pattern) or "?" in pattern or "#" in pattern:
        return (
            f"{_quote(pattern)} is not a path pattern: no spaces, query or fragment; "
            'use "*" for one segment and "**" for any number'
        )
    if any(segment in (".", "..") for segment in pattern.split("/")):
        return f'{_quote(pattern)} has a "." or ".." segment; write the path it means'
    return None


_MAX_DECODES: Final = 3


def _normalize_request_path(path: str) -> str:
    """The path as servers route it, for matching only (the SDK still sends its own bytes).

    Each step is one some common server takes, so a spelling it routes to a bound handler
    matches that binding: no query or fragment; percent-decoded, and again while that changes
    something (double-encoding, up to three rounds); ``\\`` read as ``/`` (IIS, URL parsers);
    cut at a NUL; a segment's ``;params`` dropped (Tomcat, Spring, Jetty; so ``..;`` is
    ``..``); empty and ``.`` segments dropped, ``..`` resolved; and lowercased, as
    case-insensitive routers and file systems see it.
    """
    text = re.split(r"[?#]", path, maxsplit=1)[0]
    for _ in range(_MAX_DECODES):
        decoded = re.split(r"[?#]", unquote(text), maxsplit=1)[0]
        if decoded == text:
            break
        text = decoded
    text = text.replace("\\", "/").split("\x00", 1)[0]
    segments = [segment.split(";", 1)[0] for segment in text.split("/")]
    return _resolve_dots("/".join(segments)).lower()


def _clean_segments(path: str) -> str:
    """``path`` with a leading "/", without empty segments ("//") or a trailing "/"."""
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def _resolve_dots(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


@lru_cache(maxsize=512)
def _path_regex(pattern: str) -> re.Pattern[str]:
    """The regex for a path glob: ``*`` within one segment, ``**`` (or more) across segments."""
    parts = re.split(r"(\*+)", _clean_segments(pattern).lower())
    regex = "".join(
        ("[^/]*" if part == "*" else ".*") if part.startswith("*") else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


# --- messages ---------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    name = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{name}" if path else name


def _quote(text: str) -> str:
    """``text`` in double quotes as TOML would write it, cut short when long."""
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_quote(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} value"


def _syntax_message(source: str, text: str, exc: Exception) -> str:
    """One line naming the source and the line, from tomllib's "... (at line N, column M)"."""
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if match:
        where = f"at line {match[1]}, column {match[2]}"
        return f"{source}: TOML syntax error {where}: {message[: match.start()]}; fix that line"
    if message.endswith("(at end of document)"):
        reason = message.removesuffix("(at end of document)").rstrip()
        last = max(len(text.splitlines()), 1)
        where = f"at line {last}, the end of the document"
        return f"{source}: TOML syntax error {where}: {reason}; complete that line"
    return f"{source}: TOML syntax error: {message}"


def _as_transport(transport: str) -> Transport:
    if transport == "http":
        return "http"
    if transport == "mcp":
        return "mcp"
    return "function"
