"""The gate for non-HTTP tools: MCP `tools/call` and LLM function calls. Always fails closed."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tracengent_api as api

from ._flow import Flow, resolve
from ._redaction import apply_redactions_to_value
from ._tool_args import UnreadableArguments, rebuilt, to_json_arguments
from ._tools import (
    ToolDecision,
    ToolGuardResult,
    arguments_request,
    decided,
    raise_unless_allowed,
    redactions_for,
    tool_authorize_flow,
)

if TYPE_CHECKING:
    from ._runtime import FlowContext, Runtime

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_MISSING = object()


def _guarded(decision: ToolDecision, asked: _Asked) -> ToolGuardResult:
    """The decision, and the arguments to forward: the JSON the platform saw, redacted, in the
    shape the caller gave them (see `_tool_args`). Arguments that no longer make their type
    after redaction turn an allow into a deny."""
    if not decision.allowed:
        return ToolGuardResult(decision=decision, arguments=asked.original)
    rules = redactions_for(decision)
    forwarded = apply_redactions_to_value(asked.json, rules) if rules else asked.json
    try:
        arguments = asked.rebuild(forwarded)
    except UnreadableArguments as error:
        return ToolGuardResult(ToolDecision.deny(str(error)), asked.original)
    return ToolGuardResult(decision=decision, arguments=arguments)


@dataclass(frozen=True)
class _Asked:
    """Arguments as given, and as the JSON the platform is asked about."""

    original: Any
    json: Any
    #: why the arguments cannot be shown to the platform (the call is then denied unasked)
    problem: str | None = None
    #: a governed function's bound arguments: rebuilt one parameter at a time
    per_parameter: bool = False

    @classmethod
    def of(cls, arguments: Any, *, per_parameter: bool = False) -> _Asked:
        try:
            converted = None if arguments is None else to_json_arguments(arguments)
        except UnreadableArguments as error:
            return cls(arguments, None, f"tool call not sent: {error}", per_parameter)
        return cls(arguments, converted, None, per_parameter)

    def rebuild(self, redacted: Any) -> Any:
        if not self.per_parameter:
            return rebuilt(self.original, redacted)
        return {name: rebuilt(self.original[name], value) for name, value in redacted.items()}


def _decide(
    core: FlowContext, transport: api.Transport, name: str, asked: _Asked
) -> Flow[ToolDecision]:
    """Ask about the call, or deny it unasked when its arguments cannot be shown as JSON."""
    if asked.problem is not None:
        return decided(core, name, ToolDecision.deny(asked.problem))
    return (yield from tool_authorize_flow(core, arguments_request(transport, name, asked.json)))


def _bound_arguments(signature: inspect.Signature, args: Any, kwargs: Any) -> dict[str, Any]:
    """The arguments as the function receives them, by name: `**kwargs` flattened into the
    top level (an amount limit on `amount` applies however it was passed), `*args` as a list.
    A `**kwargs` key equal to a positional-only parameter's name would give one name two
    values, so it is refused."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            extra = dict(value)
        else:
            arguments[name] = value
    clash = sorted(set(arguments) & set(extra))
    if clash:
        raise UnreadableArguments(
            f"keyword argument(s) {clash} repeat a positional-only parameter's name"
        )
    return {**arguments, **extra}


def _call_with(fn: Callable[..., T], signature: inspect.Signature, arguments: Any) -> T:
    """Call `fn` with the decided (possibly redacted) arguments; a removed one becomes its
    default, and `**kwargs` receives every decided name that is no parameter of its own."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    decided_args: dict[str, Any] = arguments if isinstance(arguments, dict) else {}
    named: set[str] = set()
    var_keyword = False
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
            continue
        named.add(name)
        value: Any = decided_args.get(name, _MISSING)
        if value is _MISSING:
            value = None if param.default is inspect.Parameter.empty else param.default
        if param.kind is param.VAR_POSITIONAL:
            args.extend(value or ())
        elif param.kind is param.KEYWORD_ONLY:
            kwargs[name] = value
        else:
            args.append(value)
    if var_keyword:
        kwargs.update({k: v for k, v in decided_args.items() if k not in named})
    return fn(*args, **kwargs)


class _GateBase:
    _core: Runtime

    def _authorize_sync(
        self, transport: api.Transport, name: str, arguments: Any
    ) -> ToolGuardResult:
        asked = arguments if isinstance(arguments, _Asked) else _Asked.of(arguments)
        return _guarded(self._core.run_sync(_decide(self._core, transport, name, asked)), asked)


class ToolGate(_GateBase):
    """`client.tools` of the sync client."""

    def __init__(self, core: Runtime) -> None:
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

    def __init__(self, core: Runtime, run: Callable[[Flow[Any]], Awaitable[Any]]) -> None:
        self._core = core
        self._run = run  # the async client's driver

    async def _authorize(
        self, transport: api.Transport, name: str, arguments: Any
    ) -> ToolGuardResult:
        asked = arguments if isinstance(arguments, _Asked) else _Asked.of(arguments)
        decision: ToolDecision = await self._run(_decide(self._core, transport, name, asked))
        return _guarded(decision, asked)

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

    def asked(args: Any, kwargs: Any) -> _Asked:
        try:
            bound = _bound_arguments(signature, args, kwargs)
        except UnreadableArguments as error:
            return _Asked(None, None, f"tool call not sent: {error}", per_parameter=True)
        return _Asked.of(bound, per_parameter=True)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            arguments = asked(args, kwargs)
            if authorize_async is not None:
                guard = await authorize_async(function, name, arguments)
            else:
                guard = await asyncio.to_thread(authorize_sync, function, name, arguments)
            raise_unless_allowed(guard.decision)
            return await _call_with(fn, signature, guard.arguments)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        guard = authorize_sync(function, name, asked(args, kwargs))
        raise_unless_allowed(guard.decision)
        return _call_with(fn, signature, guard.arguments)

    return run
