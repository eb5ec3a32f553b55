"""The gate for non-HTTP tools: MCP `tools/call` and LLM function calls. Always fails closed."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tracengent_api as api

from ._approval_handle import ApprovalHandle, parse_handle
from ._approvals import tool_digest, tool_resume_problem
from ._authorization import AuthDecision, spend_approval_flow
from ._enforcement import Enforcement, enforced, let_through, would
from ._errors import ToolDeniedException, ToolPendingApprovalException
from ._flow import Call, Flow
from ._redaction import Redaction, apply_redactions_to_value
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
    from ._runtime import AsyncRunner, FlowContext, RecordingContext, Runtime

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


def _authorize_flow(
    core: RecordingContext,
    transport: api.Transport,
    name: str,
    arguments: Any,
    enforcement: Enforcement | None = None,
) -> Flow[ToolGuardResult]:
    enforce = enforced(core, enforcement)  # a bad mode is refused before anything is asked
    asked = arguments if isinstance(arguments, _Asked) else _Asked.of(arguments)
    guard = _guarded((yield from _decide(core, transport, name, asked)), asked)
    return guard if enforce else _shadowed(core, name, guard, asked)


def _resume_flow(
    core: Runtime,
    transport: api.Transport,
    name: str,
    arguments: Any,
    invoke: Callable[[Any], T | Awaitable[T]],
    handle: ApprovalHandle | str,
) -> Flow[T]:
    """Run the tool call a `ToolPendingApprovalException` held, once its approval is given:
    refused unless it is that call (the handle's digest), approved, and not released before;
    still pending raises the same exception again. The arguments are redacted as the approval's
    obligations (and the trace's) say."""
    handle = parse_handle(handle)
    asked = _Asked.of(arguments)
    if asked.problem is not None:
        raise ToolDeniedException(core.scrub(asked.problem))
    released = core.released_approvals
    problem = tool_resume_problem(handle, transport.value, name, asked.json, released)
    if problem is not None:
        raise ToolDeniedException(decided(core, name, ToolDecision.deny(problem)).reason)
    guards: list[ToolGuardResult] = []

    def unmet(approved: AuthDecision) -> str | None:  # arguments a redaction leaves unusable
        fields = (approved.obligations.redact_fields if approved.obligations else None) or []
        allowed = ToolDecision.allow("approved")
        allowed.approval_id = handle.approval_id
        allowed.redactions = [Redaction(field, "remove") for field in fields]
        guards.append(_guarded(allowed, asked))
        return None if guards[0].allowed else guards[0].decision.reason

    approval = yield from spend_approval_flow(core, handle, released, unmet)
    if approval.pending:
        raise ToolPendingApprovalException(handle.approval_id, approval.reason, handle)
    if not approval.allowed:
        raise ToolDeniedException(decided(core, name, ToolDecision.deny(approval.reason)).reason)
    guard = guards[0]
    decided(core, name, guard.decision)
    result: T = yield Call(functools.partial(invoke, guard.arguments))
    return result


def _shadowed(
    core: RecordingContext, name: str, guard: ToolGuardResult, asked: _Asked
) -> ToolGuardResult:
    """Shadow mode: the call goes on with its arguments as given, and what enforcing the
    decision would have done (deny, hold, redact) is recorded."""
    decision = guard.decision
    rules = redactions_for(decision) if decision.allowed else []
    redacts = bool(rules) and apply_redactions_to_value(asked.json, rules) != asked.json
    what = would(decision, redacts)
    if what is None:
        return guard
    let_through(core, "tool", name, decision, what)
    return ToolGuardResult(decision.shadowed(what), asked.original)


def _guard_flow(
    core: RecordingContext,
    transport: api.Transport,
    name: str,
    arguments: Any,
    invoke: Callable[[Any], T | Awaitable[T]],
    enforcement: Enforcement | None = None,
) -> Flow[T]:
    """Decide, then run the user's `invoke(decided arguments)` only if the call is allowed:
    the one logic of every guard and governed function, sync or async (the async driver awaits
    what `invoke` returns)."""
    asked = arguments if isinstance(arguments, _Asked) else _Asked.of(arguments)
    guard = yield from _authorize_flow(core, transport, name, asked, enforcement)
    decision = guard.decision
    if decision.pending and decision.approval_id is not None and asked.problem is None:
        digest = tool_digest(transport.value, name, asked.json)  # the call it may release later
        handle = ApprovalHandle.issue(decision.approval_id, "tool", digest)
        raise ToolPendingApprovalException(decision.approval_id, decision.reason, handle)
    raise_unless_allowed(decision)
    result: T = yield Call(functools.partial(invoke, guard.arguments))
    return result


#: a call's own choice of enforcement; None: the client's option
_Mode = Enforcement | None


class ToolGate:
    """`client.tools` of the sync client.

    Each method takes `enforcement=` ("enforce" or "shadow") to override the client's option
    for that call (see `TracengentOptions.enforcement`).
    """

    def __init__(self, core: Runtime) -> None:
        self._core = core

    def authorize_mcp(
        self, tool_name: str, arguments: Any = None, *, enforcement: _Mode = None
    ) -> ToolGuardResult:
        """Authorize an MCP `tools/call`: the decision and the arguments to forward."""
        flow = _authorize_flow(self._core, _MCP, tool_name, arguments, enforcement)
        return self._core.run_sync(flow)

    def authorize_function(
        self, function_name: str, arguments: Any = None, *, enforcement: _Mode = None
    ) -> ToolGuardResult:
        """Authorize an LLM function call: the decision and the arguments to forward."""
        flow = _authorize_flow(self._core, _FN, function_name, arguments, enforcement)
        return self._core.run_sync(flow)

    def guard_mcp(
        self,
        tool_name: str,
        arguments: Any,
        invoke: Callable[[Any], T],
        *,
        enforcement: _Mode = None,
    ) -> T:
        """Call `invoke(redacted arguments)` only if the MCP tool call is allowed."""
        flow = _guard_flow(self._core, _MCP, tool_name, arguments, invoke, enforcement)
        return self._core.run_sync(flow)

    def guard_function(
        self,
        function_name: str,
        arguments: Any,
        invoke: Callable[[Any], T],
        *,
        enforcement: _Mode = None,
    ) -> T:
        """Call `invoke(redacted arguments)` only if the function call is allowed."""
        flow = _guard_flow(self._core, _FN, function_name, arguments, invoke, enforcement)
        return self._core.run_sync(flow)

    def resume_mcp(
        self,
        handle: ApprovalHandle | str,
        tool_name: str,
        arguments: Any,
        invoke: Callable[[Any], T],
    ) -> T:
        """Call `invoke(redacted arguments)` for the MCP tool call a `ToolPendingApprovalException`
        held, once a person approved it: only that call (same tool, same arguments), once."""
        return self._core.run_sync(
            _resume_flow(self._core, _MCP, tool_name, arguments, invoke, handle)
        )

    def resume_function(
        self,
        handle: ApprovalHandle | str,
        function_name: str,
        arguments: Any,
        invoke: Callable[[Any], T],
    ) -> T:
        """As `resume_mcp`, for an LLM function call held by `guard_function`."""
        flow = _resume_flow(self._core, _FN, function_name, arguments, invoke, handle)
        return self._core.run_sync(flow)

    def governed(self, name: str | None = None, *, enforcement: _Mode = None) -> Callable[[F], F]:
        """Decorate a function an LLM may call: authorized first, run with redacted arguments.

        Works on sync and async functions; on an async one the authorization runs in a worker
        thread, so the event loop is not blocked.
        """

        def decorate(fn: F) -> F:
            governed = _governed(self._core, None, fn, name or fn.__name__, enforcement)
            return cast(F, governed)

        return decorate


class AsyncToolGate:
    """`client.tools` of the async client: the same methods as coroutines."""

    def __init__(self, core: Runtime, run: AsyncRunner) -> None:
        self._core = core
        self._run = run  # the async client's driver

    async def authorize_mcp(
        self, tool_name: str, arguments: Any = None, *, enforcement: _Mode = None
    ) -> ToolGuardResult:
        return await self._run(_authorize_flow(self._core, _MCP, tool_name, arguments, enforcement))

    async def authorize_function(
        self, function_name: str, arguments: Any = None, *, enforcement: _Mode = None
    ) -> ToolGuardResult:
        flow = _authorize_flow(self._core, _FN, function_name, arguments, enforcement)
        return await self._run(flow)

    async def guard_mcp(
        self,
        tool_name: str,
        arguments: Any,
        invoke: Callable[[Any], T | Awaitable[T]],
        *,
        enforcement: _Mode = None,
    ) -> T:
        flow = _guard_flow(self._core, _MCP, tool_name, arguments, invoke, enforcement)
        return await self._run(flow)

    async def guard_function(
        self,
        function_name: str,
        arguments: Any,
        invoke: Callable[[Any], T | Awaitable[T]],
        *,
        enforcement: _Mode = None,
    ) -> T:
        flow = _guard_flow(self._core, _FN, function_name, arguments, invoke, enforcement)
        return await self._run(flow)

    async def resume_mcp(
        self,
        handle: ApprovalHandle | str,
        tool_name: str,
        arguments: Any,
        invoke: Callable[[Any], T | Awaitable[T]],
    ) -> T:
        return await self._run(_resume_flow(self._core, _MCP, tool_name, arguments, invoke, handle))

    async def resume_function(
        self,
        handle: ApprovalHandle | str,
        function_name: str,
        arguments: Any,
        invoke: Callable[[Any], T | Awaitable[T]],
    ) -> T:
        flow = _resume_flow(self._core, _FN, function_name, arguments, invoke, handle)
        return await self._run(flow)

    def governed(self, name: str | None = None, *, enforcement: _Mode = None) -> Callable[[F], F]:
        """As `ToolGate.governed`; an async function is authorized without leaving the loop."""

        def decorate(fn: F) -> F:
            governed = _governed(self._core, self._run, fn, name or fn.__name__, enforcement)
            return cast(F, governed)

        return decorate


_MCP, _FN = api.Transport.MCP, api.Transport.FUNCTION


def _governed(
    core: Runtime,
    run_async: AsyncRunner | None,
    fn: Callable[..., Any],
    name: str,
    enforcement: Enforcement | None,
) -> Callable[..., Any]:
    """`fn`, each call of it guarded by `_guard_flow`: sync, or async when `fn` is; an async
    `fn` of the sync client is decided in a worker thread and awaited on the caller's loop."""
    signature = inspect.signature(fn)

    def guarded(args: Any, kwargs: Any) -> Flow[Any]:
        try:
            arguments = _Asked.of(_bound_arguments(signature, args, kwargs), per_parameter=True)
        except UnreadableArguments as error:
            arguments = _Asked(None, None, f"tool call not sent: {error}", per_parameter=True)
        run = functools.partial(_call_with, fn, signature)
        return _guard_flow(core, _FN, name, arguments, run, enforcement)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async_fn(*args: Any, **kwargs: Any) -> Any:
            if run_async is not None:
                return await run_async(guarded(args, kwargs))
            # the sync driver's Call makes the coroutine; it runs here, on the caller's loop
            return await (await asyncio.to_thread(core.run_sync, guarded(args, kwargs)))

        return run_async_fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return core.run_sync(guarded(args, kwargs))

    return run
