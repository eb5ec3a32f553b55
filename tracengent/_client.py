"""`TracengentClient`: the synchronous shell. It moves bytes and sleeps; flows decide."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from ._approval_handle import ApprovalHandle, parse_handle
from ._authorization import (
    AuthDecision,
    AuthObligations,
    approval_flow,
    authorize_flow,
    decide_flow,
    obligations_of,
    resume_flow,
)
from ._core import CLOSE_TIMEOUT_S, ClientCore, ClientSurface
from ._delegation import DelegatedSession
from ._enforcement import Enforcement
from ._flow import Flow
from ._options import TracengentOptions
from ._tool_gate import ToolGate
from ._trace import AgentTrace

T = TypeVar("T")


class TracengentClient(ClientSurface):
    """One agent's connection to Tracengent: telemetry, decision traces and authorization.

    `transport` replaces the HTTP transport (for tests, proxies or an in-process platform).
    Construct it once per agent and close it (or use it as a context manager) at the end.
    """

    def __init__(
        self, options: TracengentOptions, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._core = ClientCore(options, transport)

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until what was recorded so far is delivered or dropped; False on timeout."""
        return self._core.dispatcher.flush(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Deliver what is queued within `timeout`, count the rest as dropped, release resources."""
        self._core.close(timeout)

    def __enter__(self) -> TracengentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- traces -----------------------------------------------------------------------------

    def begin_trace(self, root_request: str, actor_user_id: str | None = None) -> AgentTrace:
        """Open a decision trace; it is the ambient `current_trace()` until closed."""
        return AgentTrace(self._core, self._core.run_sync, root_request, actor_user_id)

    # --- authorization ----------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return self._core.run_sync(flow)

    @functools.cached_property
    def tools(self) -> ToolGate:
        """The gate for MCP tool calls and LLM function calls."""
        return ToolGate(self._core)

    def begin_delegated_task(self, delegated_token: str) -> DelegatedSession:
        """Act under a delegated token received out of band (or attenuated from a parent)."""
        return DelegatedSession(self._core, delegated_token)

    def authorize(self, permission: str, context: Mapping[str, Any] | None = None) -> AuthDecision:
        """Ask whether the agent may do `permission` now; a failure to ask is a deny saying why."""
        return self._run(authorize_flow(self._core, permission, context))

    def ensure_authorized(
        self,
        permission: str,
        context: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        enforcement: Enforcement | None = None,
    ) -> AuthObligations | None:
        """Authorize, wait out a pending approval, and raise `NotAuthorizedException` unless allowed.

        With `wait=False` a pending approval raises `ApprovalPendingException` at once; its
        `handle` resumes the call later (`resume_approval`). `enforcement` overrides the client's
        option for this call ("enforce" or "shadow")."""
        decided = decide_flow(self._core, permission, context, enforcement=enforcement, wait=wait)
        flow = obligations_of(decided)
        return self._run(flow)

    def resume_approval(
        self,
        handle: ApprovalHandle | str,
        permission: str,
        context: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> AuthObligations | None:
        """Release the call an `ApprovalPendingException` held, once it is approved.

        Refused (`NotAuthorizedException`, saying which) unless `permission` and `context` are
        the call the approval was asked for, a person approved it, and this client has not
        released a call with it before; still pending waits up to `timeout` (default
        `approval_timeout_s`), or with `wait=False` raises `ApprovalPendingException` again."""
        flow = resume_flow(
            self._core, parse_handle(handle), permission, context,
            self._core.released_approvals, wait, timeout,
        )  # fmt: skip
        return self._run(flow)

    def wait_for_approval(
        self,
        permission: str,
        approval_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> AuthDecision:
        """Poll a pending approval: approved → allow; denied, expired or timed out → deny."""
        return self._run(approval_flow(self._core, approval_id, timeout, poll_interval))

    def has_permission(self, permission: str) -> bool:
        """Whether the agent's token grants `permission`: local, no round trip once cached."""
        tokens = self._core.connection.tokens
        if tokens is None:
            return False
        try:
            tokens.get_token()
        except Exception:  # noqa: BLE001 - no token, no permission
            return False
        return self._core.permissions_allow(permission)
