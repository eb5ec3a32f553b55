"""The local platform's policy: who may call, what they may do, and which tool call needs what.

One name for the pieces, each in its own module: the loaded policy and its lookups
(``_policy_model``), how its patterns match a request (``_policy_match``), the file's tables as
pydantic models (``_policy_schema``), the rules between keys and tables (``_policy_rules``), the
problems and their wording (``_policy_problems``), and reading a file (``_policy_load``). The
built-in demo policy is the package data file ``demo_policy.toml``.
"""

from __future__ import annotations

from ._policy_load import DEFAULT_POLICY_TOML, default_policy, load_policy, parse_policy
from ._policy_model import AgentPolicy, PermissionLimit, Policy, ToolBinding, Transport
from ._policy_problems import PolicyError

__all__ = [
    "DEFAULT_POLICY_TOML",
    "AgentPolicy",
    "PermissionLimit",
    "Policy",
    "PolicyError",
    "ToolBinding",
    "Transport",
    "default_policy",
    "load_policy",
    "parse_policy",
]
