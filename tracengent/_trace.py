"""Decision traces: one timeline of an agent's steps, tool calls, LLM calls and actions.

While open, a trace is the ambient `current_trace()`: a context variable, so it follows `await`,
asyncio tasks created inside it and `contextvars.copy_context().run`, and the tracked and governed
HTTP clients attach their events and requests to it without being told. Leaving a trace never
waits on the network: its Close op goes through the dispatcher's queue after its own events.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._authorization import decide_flow
from ._context import ambient_trace, enter_trace, leave_trace
from ._encode import encode_object, trace_close_object
from ._events import (
    Actor,
    AgentEvent,
    EventStatuses,
    EventTypes,
    LlmCallResult,
    Money,
    StepFields,
    Usage,
    new_id,
    step_event,
    utc_now_iso,
)
from ._flow import Call, Flow
from ._observe import Observer, notify
from ._wire import ESTIMATED_TOKENS, RESERVATION_ID

if TYPE_CHECKING:
    from ._runtime import AsyncRunner, Recorder, SyncRunner


T = TypeVar("T")
_Trace = TypeVar("_Trace", bound="Trace")
_FAILED = frozenset({EventStatuses.FAILURE, "failed"})

#: an observer and what its step_started returned
_Step = tuple[Observer, Any]


def _describe(error: BaseException) -> str:
    """`str(error)`, which is user code: if it fails, the agent's own error must still surface."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001
        return f"{type(error).__name__} (its message could not be read)"


def _reserves(estimated_tokens: object) -> bool:
    """Whether `estimated_tokens` asks for a reservation. Only None and a plain 0 reserve
    nothing; anything else is asked for, so a negative or fractional count is refused by the
    authorization (a budget it cannot check is a deny), never skipped."""
    return estimated_tokens is not None and not (
        type(estimated_tokens) is int and estimated_tokens == 0
    )


def current_trace() -> Trace | None:
    """The trace open in the current context, if any.

    A trace closed from another thread or context cannot unset itself there, so a closed trace
    is simply never current.
    """
    trace = ambient_trace()
    return trace if isinstance(trace, Trace) else None


class TokenReservation:
    """LLM token budget reserved for one call (`trace.reserve_tokens`), settled when it ends.

    Count what the model used with `used(n)` as it goes (a stream's chunks) or `commit(total)`
    once the call succeeded. A block that raises, or ends without `commit`, records a failed
    llm_call with the tokens counted so far (0 if none), so the platform releases the rest.
    """

    __slots__ = (
        "_started",
        "_step",
        "committed",
        "decision_id",
        "estimated",
        "input",
        "model",
        "name",
        "tokens",
    )

    def __init__(self, estimated: int | None, model: str | None, name: str, input: Any) -> None:
        self.estimated = estimated
        self.model = model
        self.name = name
        self.input = input
        #: the `llm:call` decision that reserved the tokens; the llm_call event names it
        self.decision_id: str | None = None
        #: tokens used so far (None: not known)
        self.tokens: int | None = None
        self.committed = False
        self._started = 0.0
        self._step: _Step | None = None

    def used(self, tokens: int) -> None:
        """Count `tokens` more as used (what a failure or an early end still reports)."""
        self.tokens = (self.tokens or 0) + _count(tokens)

    def commit(self, tokens: int | None = None) -> None:
        """The call succeeded, having used `tokens` in all (default: those counted by `used`)."""
        if tokens is not None:
            self.tokens = _count(tokens)
        self.committed = True


def _count(tokens: int) -> int:
    if type(tokens) is not int or tokens < 0:
        raise ValueError(f"a token count is an int, 0 or more, not {tokens!r}")
    return tokens


class Trace:
    """A decision trace: what `AgentTrace` (sync) and `AsyncAgentTrace` share, and the type
    `current_trace()` returns. Its id, root request, steps, completion and close."""

    def __init__(
        self,
        core: Recorder,
        run: SyncRunner | AsyncRunner,
        root_request: str,
        actor_user_id: str | None,
    ) -> None:
        self._core = core
        self._run = run  # the client's driver, for what a step decides first (see _llm_flow)
        self.trace_id = new_id("trc")
        self.root_request = root_request
        # a numeric user id is text on the wire: made so once, so its steps stay on the fast path
        self._actor = (
            None
            if actor_user_id is None
            else Actor(actor_user_id if isinstance(actor_user_id, str) else str(actor_user_id))
        )
        self._root_pending = True
        self._last_event_id: str | None = None
        self._status: str = EventStatuses.SUCCESS
        self._summary: str | None = None
        self._closed = False
        #: redactFields of decisions taken in this trace; the tool gates apply them too
        self._obligation_redactions: tuple[str, ...] = ()
        self._context_token = enter_trace(self)
        if core.observer is not None:
            notify(core.observer.trace_opened, self)

    @property
    def closed(self) -> bool:
        """True once the trace is closed (its Close op queued); a closed trace is never current."""
        return self._closed

    @property
    def obligation_redactions(self) -> tuple[str, ...]:
        """redactFields of decisions taken in this trace; the tool gates apply them too."""
        return self._obligation_redactions

    def bind_redactions(self, paths: Iterable[str]) -> None:
        """Bind redaction obligations for the rest of the trace (each path once)."""
        known = self._obligation_redactions
        self._obligation_redactions = known + tuple(
            dict.fromkeys(p for p in paths if p not in known)
        )

    # --- recording ------------------------------------------------------------------------

    def step(self, reasoning: str, attributes: Any = None) -> None:
        """Record a reasoning step (a `decision` event)."""
        self._emit(AgentEvent(type=EventTypes.DECISION, name=reasoning, attributes=attributes))

    def record(self, event: AgentEvent) -> None:
        """Record a free-form event in this trace."""
        self._emit(event)

    def _emit(self, event: AgentEvent) -> None:
        try:
            event.trace_id = self.trace_id
            if event.parent_event_id is None:
                event.parent_event_id = self._last_event_id
            if event.actor is None:
                event.actor = self._actor
            if self._root_pending:
                self._root_pending = False
                if event.root_request is None:
                    event.root_request = self.root_request
            if event.event_id is None:
                event.event_id = new_id("evt")
            self._last_event_id = event.event_id
        except Exception:  # noqa: BLE001 - let record() count what is not an event
            pass
        self._core.record(event)

    def _start_step(self, kind: str, name: str) -> _Step | None:
        """Tell an installed observer a step starts (before its authorization, if any)."""
        observer = self._core.observer
        if observer is None:
            return None
        return observer, notify(observer.step_started, self, kind, name)

    @staticmethod
    def _end_step(
        step: _Step | None, event: AgentEvent | None, error: BaseException | None
    ) -> None:
        if step is not None:
            notify(step[0].step_finished, step[1], event, error)

    def _finish(
        self,
        kind: str,
        name: str,
        started: float,
        input: Any,
        output: Any,
        error: BaseException | None,
        cost: Money | None = None,
        usage: Usage | None = None,
        step: _Step | None = None,
        attributes: Any = None,
    ) -> None:
        if error is not None:
            self._status = EventStatuses.FAILURE
            output = {"error": _describe(error)}
        # The hot path of every tracked call: one plain tuple, its values encoded (StepFields).
        queued = step is None and self._core.observer is None
        if queued:
            input = None if input is None else encode_object(input)
            output = None if output is None else encode_object(output)
            attributes = None if attributes is None else encode_object(attributes)
        event_id = new_id("evt")
        root_request = None
        if self._root_pending:
            self._root_pending = False
            root_request = self.root_request
        fields: StepFields = (
            name,
            kind,
            EventStatuses.SUCCESS if error is None else EventStatuses.FAILURE,
            event_id,
            self.trace_id,
            self._last_event_id,
            self._actor,
            input,
            output,
            cost,
            usage,
            attributes,
            int((time.perf_counter() - started) * 1000),
            root_request,
            _time_ns(),
            None,  # idempotency_key
            None,  # agent_id
            None,  # occurred_at
            None,  # tags
        )
        self._last_event_id = event_id
        if queued:
            self._core.dispatcher.enqueue_step(fields)
            return
        recorded = step_event(fields).agent_event()
        self._core.record(recorded)
        self._end_step(step, recorded, error)

    # --- what wraps the user's function, written once for both clients ----------------------

    def _llm_flow(
        self,
        name: str,
        call: Callable[[], LlmCallResult[T] | Awaitable[LlmCallResult[T]]],
        estimated_tokens: int | None,
        input: Any,
    ) -> Flow[T]:
        """Reserve `llm:call` budget (a refusal raises and the model is never called), run the
        user's `call`, record an `llm_call` step with the tokens it really used (0 when it
        failed, so the platform releases the reservation the step names)."""
        held = yield from self._hold_flow(TokenReservation(estimated_tokens, None, name, input))
        try:
            result = yield Call(call)
        except Exception as error:
            self._settle(held, None, error)
            raise
        if not isinstance(result, LlmCallResult):  # no usage known: the trace's close releases
            held.committed = True
            self._settle(held, result, None)
            return result  # type: ignore[no-any-return]
        held.tokens, held.model, held.committed = result.tokens, result.model, True
        self._settle(held, result.value, None, result.cost)
        return result.value  # type: ignore[no-any-return]

    def _hold_flow(self, reservation: TokenReservation) -> Flow[TokenReservation]:
        """Authorize `llm:call` for the reservation's estimate (a refusal raises, and what it
        guards never runs), keep the decision's id, and start the step's clock."""
        reservation._step = self._start_step(EventTypes.LLM_CALL, reservation.name)
        if _reserves(reservation.estimated):
            try:
                context = {ESTIMATED_TOKENS: reservation.estimated}
                decision = yield from decide_flow(self._core, "llm:call", context)
            except Exception as error:
                self._end_step(reservation._step, None, error)
                raise
            reservation.decision_id = decision.decision_id or None
        reservation._started = time.perf_counter()
        return reservation

    @contextlib.contextmanager
    def _holding(self, held: TokenReservation) -> Iterator[None]:
        """Settle `held` when the block it guards ends, however it ends (a cancellation too)."""
        try:
            yield
        except BaseException as error:
            self._settle(held, None, error)
            raise
        self._settle(held, None, None)

    def _settle(
        self,
        reservation: TokenReservation,
        output: Any,
        error: BaseException | None,
        cost: Money | None = None,
    ) -> None:
        """Record the reservation's llm_call step: what it used, naming the reservation.

        A call that failed, or ended without a commit (a stream cut short), is a failed step
        with the tokens counted so far, 0 if none: what the platform reconciles it with."""
        if error is None and not reservation.committed:
            error = RuntimeError("the token reservation ended without a commit")
        tokens = reservation.tokens if error is None else reservation.tokens or 0
        known = tokens is not None or reservation.model is not None
        usage = Usage(tokens, reservation.model) if known else None
        self._finish(
            EventTypes.LLM_CALL,
            reservation.name,
            reservation._started,
            reservation.input,
            output,
            error,
            cost,
            usage,
            reservation._step,
            None if reservation.decision_id is None else {RESERVATION_ID: reservation.decision_id},
        )

    # --- completion -----------------------------------------------------------------------

    def complete(self, status: str, summary: str | None = None) -> None:
        """Set the trace's final status ("success"/"completed" or "failure"/"failed") and summary."""
        self._status = status
        self._summary = summary

    def close(self) -> None:
        """Send the Close op (once, in the background). Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        failed = self._status in _FAILED
        if self._core.observer is not None:
            notify(self._core.observer.trace_closed, self, failed, self._summary)
        leave_trace(self, self._context_token)
        with contextlib.suppress(Exception):  # closing a trace never raises into the agent
            self._core.dispatcher.enqueue_trace_close(
                trace_close_object(
                    trace_id=self.trace_id,
                    agent_id=self._core.options.agent_id,
                    root_request=self.root_request,
                    failed=failed,
                    occurred_at=utc_now_iso(),
                    summary=self._summary,
                )
            )

    def _exit(self, failed: bool) -> None:
        if failed and self._status not in _FAILED:
            self._status = EventStatuses.FAILURE
        self.close()

    def __enter__(self: _Trace) -> _Trace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._exit(exc_info[0] is not None)


class AgentTrace(Trace):
    """A decision trace of the sync client; use it as a context manager."""

    _run: SyncRunner

    def track_tool_call(self, name: str, call: Callable[[], T], input: Any = None) -> T:
        """Run a tool call, timed, recorded as a `tool_call` event; re-raises its failure."""
        return self._track(EventTypes.TOOL_CALL, name, call, input, None)

    def track_action(
        self, name: str, action: Callable[[], T], input: Any = None, cost: Money | None = None
    ) -> T:
        """Run a side-effecting action (often with a cost), timed and recorded."""
        return self._track(EventTypes.ACTION, name, action, input, cost)

    def track_llm_call(
        self,
        name: str,
        call: Callable[[], LlmCallResult[T]],
        estimated_tokens: int | None = None,
        input: Any = None,
    ) -> T:
        """Run an LLM call under token governance.

        With `estimated_tokens`, `llm:call` is authorized first so the platform reserves that budget;
        a denied reservation raises `NotAuthorizedException` and the model is never called. The
        recorded event's usage reconciles the reservation.
        """
        return self._run(self._llm_flow(name, call, estimated_tokens, input))

    @contextlib.contextmanager
    def reserve_tokens(
        self, estimated: int, model: str | None = None, *, name: str = "llm_call", input: Any = None
    ) -> Iterator[TokenReservation]:
        """Reserve `estimated` tokens of `llm:call` budget around your own model call.

        A refused reservation raises `NotAuthorizedException` and the block never runs. Call
        `reservation.commit(actual)` when the call succeeded; a block that raises or ends without
        it records a failed llm_call with the tokens counted (`reservation.used(n)`), 0 if none.
        """
        held = self._run(self._hold_flow(TokenReservation(estimated, model, name, input)))
        with self._holding(held):
            yield held

    def _track(
        self, kind: str, name: str, work: Callable[[], T], input: Any, cost: Money | None
    ) -> T:
        # The hot path of every agent: a `with` block or a flow here would cost 0.5-2 µs on ~2;
        # what a tracked call means lives in `_finish`, so this and the async twin only call.
        step = None if self._core.observer is None else self._start_step(kind, name)
        started = time.perf_counter()
        try:
            result = work()
        except Exception as error:
            self._finish(kind, name, started, input, None, error, cost, None, step)
            raise
        self._finish(kind, name, started, input, result, None, cost, None, step)
        return result


class AsyncAgentTrace(Trace):
    """A decision trace of the async client; `async with`, and `await` its `track_*` methods."""

    _run: AsyncRunner

    async def __aenter__(self) -> AsyncAgentTrace:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._exit(exc_info[0] is not None)

    # The overloads put the awaitable form first: with `T | Awaitable[T]` alone, a lambda that
    # returns a coroutine would make T the coroutine (or Never) for a type checker.
    @overload
    async def track_tool_call(
        self, name: str, call: Callable[[], Awaitable[T]], input: Any = None
    ) -> T: ...
    @overload
    async def track_tool_call(self, name: str, call: Callable[[], T], input: Any = None) -> T: ...
    async def track_tool_call(
        self, name: str, call: Callable[[], T | Awaitable[T]], input: Any = None
    ) -> T:
        """Run a tool call (sync, or returning an awaitable), timed and recorded."""
        return await self._track(EventTypes.TOOL_CALL, name, call, input, None)

    @overload
    async def track_action(
        self,
        name: str,
        action: Callable[[], Awaitable[T]],
        input: Any = None,
        cost: Money | None = None,
    ) -> T: ...
    @overload
    async def track_action(
        self, name: str, action: Callable[[], T], input: Any = None, cost: Money | None = None
    ) -> T: ...
    async def track_action(
        self,
        name: str,
        action: Callable[[], T | Awaitable[T]],
        input: Any = None,
        cost: Money | None = None,
    ) -> T:
        return await self._track(EventTypes.ACTION, name, action, input, cost)

    @overload
    async def track_llm_call(
        self,
        name: str,
        call: Callable[[], Awaitable[LlmCallResult[T]]],
        estimated_tokens: int | None = None,
        input: Any = None,
    ) -> T: ...
    @overload
    async def track_llm_call(
        self,
        name: str,
        call: Callable[[], LlmCallResult[T]],
        estimated_tokens: int | None = None,
        input: Any = None,
    ) -> T: ...
    async def track_llm_call(
        self,
        name: str,
        call: Callable[[], LlmCallResult[T] | Awaitable[LlmCallResult[T]]],
        estimated_tokens: int | None = None,
        input: Any = None,
    ) -> T:
        return await self._run(self._llm_flow(name, call, estimated_tokens, input))

    @contextlib.asynccontextmanager
    async def reserve_tokens(
        self, estimated: int, model: str | None = None, *, name: str = "llm_call", input: Any = None
    ) -> AsyncIterator[TokenReservation]:
        """`AgentTrace.reserve_tokens`, for `async with`."""
        held = await self._run(self._hold_flow(TokenReservation(estimated, model, name, input)))
        with self._holding(held):
            yield held

    async def _track(
        self,
        kind: str,
        name: str,
        work: Callable[[], T | Awaitable[T]],
        input: Any,
        cost: Money | None,
    ) -> T:
        step = None if self._core.observer is None else self._start_step(kind, name)
        started = time.perf_counter()
        try:
            result = work()
            if inspect.isawaitable(result):  # resolve(), inlined: one coroutine less per call
                result = await result
        except Exception as error:
            self._finish(kind, name, started, input, None, error, cost, None, step)
            raise
        self._finish(kind, name, started, input, result, None, cost, None, step)
        return result
