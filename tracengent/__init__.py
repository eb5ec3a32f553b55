"""Tracengent: observe and govern LLM agents.

The public surface is re-exported here; modules with a leading underscore are private. The
generated low-level API lives in the separate `tracengent_api` package.

Names are loaded on first use (PEP 562), so `import tracengent` costs almost nothing and an
application pays for the governance and async machinery only if it uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:  # the same names as _EXPORTS, for type checkers ("X as X": re-exported)
    from ._approval_handle import (
        ApprovalHandle as ApprovalHandle,
    )
    from ._approvals import (
        ApprovalPendingException as ApprovalPendingException,
    )
    from ._async_client import (
        AsyncTracengentClient as AsyncTracengentClient,
    )
    from ._auth import (
        AgentTokenProvider as AgentTokenProvider,
    )
    from ._authorization import (
        AuthDecision as AuthDecision,
        AuthObligations as AuthObligations,
    )
    from ._client import (
        TracengentClient as TracengentClient,
    )
    from ._delegation import (
        AsyncDelegatedSession as AsyncDelegatedSession,
        DelegatedSession as DelegatedSession,
    )
    from ._errors import (
        DelegationException as DelegationException,
        NotAuthorizedException as NotAuthorizedException,
        ToolDeniedException as ToolDeniedException,
        ToolPendingApprovalException as ToolPendingApprovalException,
        TracengentConfigError as TracengentConfigError,
        TracengentError as TracengentError,
    )
    from ._events import (
        Actor as Actor,
        AgentEvent as AgentEvent,
        EventStatuses as EventStatuses,
        EventTypes as EventTypes,
        LlmCallResult as LlmCallResult,
        Money as Money,
        Usage as Usage,
        new_id as new_id,
    )
    from ._gateway import (
        AsyncGatewayTransport as AsyncGatewayTransport,
        GatewayTransport as GatewayTransport,
        async_governed_client as async_governed_client,
        governed_client as governed_client,
    )
    from ._observe import (
        Observer as Observer,
    )
    from ._options import (
        TracengentOptions as TracengentOptions,
    )
    from ._permissions import (
        permission_matches as permission_matches,
    )
    from ._redaction import (
        MASK_TOKEN as MASK_TOKEN,
        Redaction as Redaction,
        apply_redactions as apply_redactions,
    )
    from ._tool_gate import (
        AsyncToolGate as AsyncToolGate,
        ToolGate as ToolGate,
    )
    from ._tools import (
        ToolDecision as ToolDecision,
        ToolGuardResult as ToolGuardResult,
    )
    from ._trace import (
        AgentTrace as AgentTrace,
        AsyncAgentTrace as AsyncAgentTrace,
        TokenReservation as TokenReservation,
        Trace as Trace,
        current_trace as current_trace,
    )
    from ._tracking import (
        AsyncTrackingTransport as AsyncTrackingTransport,
        TrackingTransport as TrackingTransport,
        async_tracked_client as async_tracked_client,
        tracked_client as tracked_client,
    )

_EXPORTS = {
    "ApprovalHandle": "._approval_handle",
    "ApprovalPendingException": "._approvals",
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
    "DelegationException": "._errors",
    "EventStatuses": "._events",
    "EventTypes": "._events",
    "GatewayTransport": "._gateway",
    "LlmCallResult": "._events",
    "MASK_TOKEN": "._redaction",
    "Money": "._events",
    "NotAuthorizedException": "._errors",
    "Observer": "._observe",
    "TokenReservation": "._trace",
    "Trace": "._trace",
    "Redaction": "._redaction",
    "ToolDecision": "._tools",
    "ToolDeniedException": "._errors",
    "ToolGate": "._tool_gate",
    "ToolGuardResult": "._tools",
    "ToolPendingApprovalException": "._errors",
    "TracengentClient": "._client",
    "TracengentConfigError": "._errors",
    "TracengentError": "._errors",
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


__version__ = "0.2.0"

# The lazy table above is the one list of public names (a test checks the TYPE_CHECKING imports
# name the same modules).
__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
