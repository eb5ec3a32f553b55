"""Reading a policy: TOML text or file in, a checked ``Policy`` or a ``PolicyError`` out.

A policy is read once, at start, and checked as a whole. Three steps, each collecting instead
of stopping at the first problem: TOML syntax (one error, naming the line); the document
against its pydantic models (every bad key of every table, ``_policy_schema``); and the rules
between keys and tables, run on what is usable of the document even when keys are bad
(``_policy_rules``). ``_policy_report`` words pydantic's errors and puts every problem in the
order of the file; the problems between tables come last.

The built-in demo policy, which documents every key, ships as ``demo_policy.toml`` next to
this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydantic import ValidationError

from ._policy_model import AgentPolicy, PermissionLimit, Policy, ToolBinding, Transport
from ._policy_problems import PolicyError, Problem, invalid_policy, syntax_error
from ._policy_report import listing_order, problem_of
from ._policy_rules import cross_problems, table_problems, usable_bindings
from ._policy_schema import SALVAGE, HttpBindingTable, NamedBindingTable, PolicyDocument

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["DEFAULT_POLICY_TOML", "default_policy", "load_policy", "parse_policy"]

#: the built-in demo policy, and the commented reference for the format
DEFAULT_POLICY_TOML: Final = (files(__package__) / "demo_policy.toml").read_text(encoding="utf-8")

_DEFAULT_APPROVAL_TTL_S: Final = 600.0
_DEFAULT_TOKEN_TTL_S: Final = 900


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy ``text`` declares; PolicyError listing every problem when it is not usable."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise syntax_error(source, text, exc) from exc
    try:
        doc = PolicyDocument.model_validate(raw)
        key_problems: list[Problem] = []
    except ValidationError as exc:
        key_problems = [problem_of(error) for error in exc.errors()]
        doc = PolicyDocument.model_validate(raw, context=SALVAGE)
    in_tables = sorted([*key_problems, *table_problems(doc)], key=listing_order)
    problems = [*in_tables, *cross_problems(doc)]
    if problems:
        raise invalid_policy(source, problems)
    return _policy(doc)


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


# --- the checked document as a Policy ---------------------------------------------------------


def _policy(doc: PolicyDocument) -> Policy:
    """The policy a document without problems declares: every needed key is there."""
    assert doc.currency is not None
    return Policy(
        currency=doc.currency,
        fx_rates=MappingProxyType(dict(doc.fx_rates)),
        approval_ttl_s=(
            _DEFAULT_APPROVAL_TTL_S
            if doc.approval_ttl_seconds is None
            else doc.approval_ttl_seconds
        ),
        token_ttl_s=_DEFAULT_TOKEN_TTL_S
        if doc.token_ttl_seconds is None
        else doc.token_ttl_seconds,
        agents=tuple(_agents(doc)),
        limits=tuple(
            PermissionLimit(
                permission=limit.permission,
                max_amount=limit.max_amount,
                require_approval_over=limit.require_approval_over,
                redact_fields=limit.redact_fields,
            )
            for limit in doc.limits
            if limit is not None and limit.permission is not None
        ),
        tools=tuple(_bindings(doc)),
        egress_allowlist=doc.egress_allowlist,
        unbound_tools=doc.unbound_tools or "deny",
        unbound_paths=doc.unbound_paths or "deny",
    )


def _agents(doc: PolicyDocument) -> Iterable[AgentPolicy]:
    for agent in doc.agents:
        assert agent is not None and agent.id is not None
        yield AgentPolicy(
            agent_id=agent.id,
            client_id=agent.client_id,
            client_secret=agent.client_secret,
            ingest_key=agent.ingest_key,
            disabled=bool(agent.disabled),
            permissions=agent.permissions,
            llm_token_budget=agent.llm_token_budget,
        )


def _bindings(doc: PolicyDocument) -> Iterable[ToolBinding]:
    for at, binding in usable_bindings(doc):
        assert binding.permission is not None
        http = binding if isinstance(binding, HttpBindingTable) else None
        transport: Transport = "http" if http else "mcp" if at[1] == "mcp" else "function"
        yield ToolBinding(
            transport=transport,
            permission=binding.permission,
            host=None if http is None else http.host,
            method=None if http is None else http.method,
            path=None if http is None else http.path,
            name=binding.name if isinstance(binding, NamedBindingTable) else None,
            amount_field=binding.amount_field,
            currency_field=binding.currency_field,
            currency=binding.currency,
            redactions=tuple(
                (rule.field, rule.strategy or "remove")
                for rule in binding.redactions
                if rule is not None and rule.field is not None
            ),
        )
