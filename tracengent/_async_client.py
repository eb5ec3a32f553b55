"""`AsyncTracengentClient`: the asyncio shell over the same core and flows.

Telemetry goes through the same background dispatcher as the sync client (recording is a deque
append, so the loop never waits); governance calls use `httpx.AsyncClient`, and a token refresh
runs in a worker thread, so nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
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
from ._deadline import bound_by_deadlines
from ._delegation import AsyncDelegatedSession
from ._enforcement import Enforcement
from ._flow import Flow, run_async
from ._options import TracengentOptions
from ._tool_gate import AsyncToolGate
from ._trace import AsyncAgentTrace

T = TypeVar("T")


class AsyncTracengentClient(ClientSurface):
    """The asyncio twin of `TracengentClient`: the same surface, as coroutines.

    `transport` is used for governance calls; when it is also a sync transport (such as
    `httpx.MockTransport`), telemetry uses it too.
    """

    def __init__(
        self,
        options: TracengentOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        sync_transport = transport if isinstance(transport, httpx.BaseTransport) else None
        self._core = ClientCore(options, sync_transport)
        shared = self._core.connection.transport  # the embedded platform serves both sides
        if transport is None and isinstance(shared, httpx.AsyncBaseTransport):
            transport = shared
        self._http = bound_by_deadlines(  # a deadline bounds the whole exchange
            httpx.AsyncClient(transport=transport, timeout=options.request_timeout_s)
        )

    async def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        return await asyncio.to_thread(self._core.dispatcher.flush, timeout)

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        await asyncio.to_thread(self._core.close, timeout)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTracengentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- traces -----------------------------------------------------------------------------

    def begin_trace(self, root_request: str, actor_user_id: str | None = None) -> AsyncAgentTrace:
        return AsyncAgentTrace(self._core, self._run, root_request, actor_user_id)

    # --- authorization ----------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._http, self._core.connection.tokens)

    @functools.cached_property
    def tools(self) -> AsyncToolGate:
        """The gate for MCP tool calls and LLM function calls, as coroutines."""
        return AsyncToolGate(self._core, self._run)

    def begin_delegated_task(self, delegated_token: str) -> AsyncDelegatedSession:
        """Act under a delegated token received out of band (or attenuated from a parent)."""
        return AsyncDelegatedSession(self._core, delegated_token, self._run)

    async def authorize(
        self, permission: str, context: Mapping[str, Any] | None = None
    ) -> AuthDecision:
        return await self._run(authorize_flow(self._core, permission, context))

    async def ensure_authorized(
        self,
        permission: str,
        context: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        enforcement: Enforcement | None = None,
    ) -> AuthObligations | None:
        decided = decide_flow(self._core, permission, context, enforcement=enforcement, wait=wait)
        flow = obligations_of(decided)
        return await self._run(flow)

    async def resume_approval(
        self,
        handle: ApprovalHandle | str,
        permission: str,
        context: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> AuthObligations | None:
        flow = resume_flow(
            self._core, parse_handle(handle), permission, context,
            self._core.released_approvals, wait, timeout,
        )  # fmt: skip
        return await self._run(flow)

    async def wait_for_approval(
        self,
        permission: str,
        approval_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> AuthDecision:
        return await self._run(approval_flow(self._core, approval_id, timeout, poll_interval))

    async def has_permission(self, permission: str) -> bool:
        tokens = self._core.connection.tokens
        if tokens is None:
            return False
        if tokens.cached() is None:
            try:
                await asyncio.to_thread(tokens.get_token)
            except Exception:  # noqa: BLE001 - no token, no permission
                return False
        return self._core.permissions_allow(permission)
