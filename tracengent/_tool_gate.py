"""The gate for non-HTTP tools: MCP `tools/call` and LLM function calls. Always fails closed."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tracengent_api as api

from ._flow import resolve
from ._redaction import apply_redactions_to_value
from ._tools import (
    ToolDecision,
    ToolGuardResult,
    arguments_request,
    raise_unless_allowed,
    redactions_for,
    tool_authorize_flow,
)

if TYPE_CHECKING:
    from ._async_client import AsyncTracengentClient
    from ._client import TracengentClient
    from ._core import ClientCore

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING = object()


def _guarded(decision: ToolDecision, arguments: Any) -> ToolGuardResult:
    rules = redactions_for(decision) if decision.allowed else []
    forwarded = apply_redactions_to_value(arguments, rules) if rules else arguments
    return ToolGuardResult(decision=decision, arguments=forwarded)


def _bound_arguments(signature: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _call_with(fn: Callable[..., T], signature: inspect.Signature, arguments: Any) -> T:
    """Call `fn` with the (possibly redacted) bound arguments; a removed one becomes its default."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        value: Any = arguments.get(name, _MISSING) if isinstance(arguments, dict) else _MISSING
        if value is _MISSING:
            value = None if param.default is inspect.Parameter.empty else param.default
        if param.kind is param.VAR_POSITIONAL:
            args.extend(value or ())
        elif param.kind is param.VAR_KEYWORD:
            kwargs.update(value or {})
        elif param.kind is param.KEYWORD_ONLY:
            kwargs[name] = value
        else:
            args.append(value)
    return fn(*args, **kwargs)


class _GateBase:
    _core: ClientCore

    def _authorize_sync(
        self, transport: api.Transport, name: str, arguments: Any
    ) -> ToolGuardResult:
        flow = tool_authorize_flow(self._core, arguments_request(transport, name, arguments))
        return _guarded(self._core.run_sync(flow), arguments)


class ToolGate(_GateBase):
    """`client.tools` of the sync client."""

    def __init__(self, client: TracengentClient, core: ClientCore) -> None:
        self._client = client
        self._core = core

    def authorize_mcp(self, tool_name: str, arguments: Any = None) -> ToolGuardResult:
        """Authorize an MCP `tools/call`: the decision and the arguments to forward."""
        return self._authorize_sync(api.Transport.MCP, tool_name, arguments)

    def authorize_function(self, function_name: str, arguments: Any = None) -> ToolGuardResult:
        """Authorize an LLM function call: the decision and the arguments to forward."""
        return self._authorize_sync(api.Transport.FUNCTION, function_name, arguments)

    def guard_mcp(self, tool_name: str, arguments: Any, invoke: Callable[[Any], T]) -> T:
        """Call `invoke(redacted arguments)` only if the MCP tool call is allowed."""
        guard = self.authorize_mcp(tool_name, arguments)
        guard.ensure_allowed()
        return invoke(guard.arguments)

    def guard_function(self, function_name: str, arguments: Any, invoke: Callable[[Any], T]) -> T:
        """Call `invoke(redacted arguments)` only if the function call is allowed."""
        guard = self.authorize_function(function_name, arguments)
        guard.ensure_allowed()
        return invoke(guard.arguments)

    def governed(self, name: str | None = None) -> Callable[[F], F]:
        """Decorate a function an LLM may call: authorized first, run with redacted arguments.

        Works on sync and async functions; on an async one the authorization runs in a worker
        thread, so the event loop is not blocked.
        """

        def decorate(fn: F) -> F:
            return cast(F, _governed(self._authorize_sync, None, fn, name or fn.__name__))

        return decorate


class AsyncToolGate(_GateBase):
    """`client.tools` of the async client: the same methods as coroutines."""

    def __init__(self, client: AsyncTracengentClient, core: ClientCore) -> None:
        self._client = client
        self._core = core

    async def _authorize(
        self, transport: api.Transport, name: str, arguments: Any
    ) -> ToolGuardResult:
        flow = tool_authorize_flow(self._core, arguments_request(transport, name, arguments))
        return _guarded(await self._client._run(flow), arguments)

    async def authorize_mcp(self, tool_name: str, arguments: Any = None) -> ToolGuardResult:
        return await self._authorize(api.Transport.MCP, tool_name, arguments)

    async def authorize_function(
        self, function_name: str, arguments: Any = None
    ) -> ToolGuardResult:
        return await self._authorize(api.Transport.FUNCTION, function_name, arguments)

    async def guard_mcp(
        self, tool_name: str, arguments: Any, invoke: Callable[[Any], T | Awaitable[T]]
    ) -> T:
        guard = await self.authorize_mcp(tool_name, arguments)
        guard.ensure_allowed()
        return await resolve(invoke(guard.arguments))

    async def guard_function(
        self, function_name: str, arguments: Any, invoke: Callable[[Any], T | Awaitable[T]]
    ) -> T:
        guard = await self.authorize_function(function_name, arguments)
        guard.ensure_allowed()
        return await resolve(invoke(guard.arguments))

    def governed(self, name: str | None = None) -> Callable[[F], F]:
        """As `ToolGate.governed`; an async function is authorized without leaving the loop."""

        def decorate(fn: F) -> F:
            return cast(
                F, _governed(self._authorize_sync, self._authorize, fn, name or fn.__name__)
            )

        return decorate


def _governed(
    authorize_sync: Callable[[api.Transport, str, Any], ToolGuardResult],
    authorize_async: Callable[[api.Transport, str, Any], Awaitable[ToolGuardResult]] | None,
    fn: Callable[..., Any],
    name: str,
) -> Callable[..., Any]:
    signature = inspect.signature(fn)
    function = api.Transport.FUNCTION

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            arguments = _bound_arguments(signature, args, kwargs)
            if authorize_async is not None:
                guard = await authorize_async(function, name, arguments)
            else:
                guard = await asyncio.to_thread(authorize_sync, function, name, arguments)
            raise_unless_allowed(guard.decision)
            return await _call_with(fn, signature, guard.arguments)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        guard = authorize_sync(function, name, _bound_arguments(signature, args, kwargs))
        raise_unless_allowed(guard.decision)
        return _call_with(fn, signature, guard.arguments)

    return run
