"""Tracengent: observe and govern LLM agents.

The public surface is re-exported here; modules with a leading underscore are private. The
generated low-level API lives in the separate `tracengent_api` package.

Names are loaded on first use (PEP 562), so `import tracengent` costs almost nothing and an
application pays for the governance and async machinery only if it uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async_client import AsyncTracengentClient
    from ._auth import AgentTokenProvider
    from ._authorization import AuthDecision, AuthObligations, NotAuthorizedException
    from ._client import TracengentClient
    from ._delegation import AsyncDelegatedSession, DelegatedSession, DelegationException
    from ._events import (
        Actor,
        AgentEvent,
        EventStatuses,
        EventTypes,
        LlmCallResult,
        Money,
        Usage,
        new_id,
    )
    from ._gateway import (
        AsyncGatewayTransport,
        GatewayTransport,
        async_governed_client,
        governed_client,
    )
    from ._options import TracengentConfigError, TracengentOptions
    from ._permissions import permission_matches
    from ._redaction import MASK_TOKEN, Redaction, apply_redactions
    from ._tool_gate import AsyncToolGate, ToolGate
    from ._tools import (
        ToolDecision,
        ToolDeniedException,
        ToolGuardResult,
        ToolPendingApprovalException,
    )
    from ._trace import AgentTrace, AsyncAgentTrace, current_trace
    from ._tracking import (
        AsyncTrackingTransport,
        TrackingTransport,
        async_tracked_client,
        tracked_client,
    )

_EXPORTS = {
    "Actor": "._events",
    "AgentEvent": "._events",
    "AgentTokenProvider": "._auth",
    "AgentTrace": "._trace",
    "AsyncAgentTrace": "._trace",
    "AsyncDelegatedSession": "._delegation",
    "AsyncGatewayTransport": "._gateway",
    "AsyncToolGate": "._tool_gate",
    "AsyncTracengentClient": "._async_client",
    "AsyncTrackingTransport": "._tracking",
    "AuthDecision": "._authorization",
    "AuthObligations": "._authorization",
    "DelegatedSession": "._delegation",
    "DelegationException": "._delegation",
    "EventStatuses": "._events",
    "EventTypes": "._events",
    "GatewayTransport": "._gateway",
    "LlmCallResult": "._events",
    "MASK_TOKEN": "._redaction",
    "Money": "._events",
    "NotAuthorizedException": "._authorization",
    "Redaction": "._redaction",
    "ToolDecision": "._tools",
    "ToolDeniedException": "._tools",
    "ToolGate": "._tool_gate",
    "ToolGuardResult": "._tools",
    "ToolPendingApprovalException": "._tools",
    "TracengentClient": "._client",
    "TracengentConfigError": "._options",
    "TracengentOptions": "._options",
    "TrackingTransport": "._tracking",
    "Usage": "._events",
    "apply_redactions": "._redaction",
    "async_governed_client": "._gateway",
    "async_tracked_client": "._tracking",
    "current_trace": "._trace",
    "governed_client": "._gateway",
    "new_id": "._events",
    "permission_matches": "._permissions",
    "tracked_client": "._tracking",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracengent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.2.0"

__all__ = [
    "MASK_TOKEN",
    "Actor",
    "AgentEvent",
    "AgentTokenProvider",
    "AgentTrace",
    "AsyncAgentTrace",
    "AsyncDelegatedSession",
    "AsyncGatewayTransport",
    "AsyncToolGate",
    "AsyncTracengentClient",
    "AsyncTrackingTransport",
    "AuthDecision",
    "AuthObligations",
    "DelegatedSession",
    "DelegationException",
    "EventStatuses",
    "EventTypes",
    "GatewayTransport",
    "LlmCallResult",
    "Money",
    "NotAuthorizedException",
    "Redaction",
    "ToolDecision",
    "ToolDeniedException",
    "ToolGate",
    "ToolGuardResult",
    "ToolPendingApprovalException",
    "TracengentClient",
    "TracengentConfigError",
    "TracengentOptions",
    "TrackingTransport",
    "Usage",
    "__version__",
    "apply_redactions",
    "async_governed_client",
    "async_tracked_client",
    "current_trace",
    "governed_client",
    "new_id",
    "permission_matches",
    "tracked_client",
]
