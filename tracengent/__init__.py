"""Tracengent: observe and govern LLM agents.

The public surface is re-exported here; modules with a leading underscore are private. The
generated low-level API lives in the separate `tracengent_api` package.
"""

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
