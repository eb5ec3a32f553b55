"""OpenTelemetry binding: every decision trace is also an OpenTelemetry trace, and back.

    from tracengent.integrations.opentelemetry import instrument_opentelemetry

    instrumentation = instrument_opentelemetry(client)  # a TracengentClient or AsyncTracengentClient
    ...
    instrumentation.uninstrument()

A trace is an `invoke_agent` span made current for its body, its tool calls, LLM calls and actions
are child spans current while they run (so the application's own spans nest under them), each
authorization or tool-governance decision is a `tracengent.decision` event on the span it gated
(and one shadow mode let through a `tracengent.shadow` event, `tracengent.shadow.would` saying
what enforcing it would have done), and every event the client records carries the ids of the span current when it was recorded
(`otel.trace_id`, `otel.span_id`) while the spans carry Tracengent's ids: either side leads to
the other. Names follow the OpenTelemetry GenAI semantic conventions.

Only `opentelemetry-api` is imported: the application brings its SDK and exporters, and without
an SDK every span is a no-op. Nothing here raises into the agent.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context, trace as otel_trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError as error:
    raise ImportError(
        'tracengent.integrations.opentelemetry needs OpenTelemetry: pip install "tracengent[otel]"'
    ) from error

from .. import __version__
from .._async_client import AsyncTracengentClient
from .._client import TracengentClient
from .._events import AgentEvent
from .._observe import Decision, Observer
from ._otel_spans import (
    OTEL_SPAN_ID,
    OTEL_TRACE_ID,
    TRACE_FAILED,
    decision_attributes,
    describe_step,
    fail_step,
    start_step,
    trace_attributes,
)

if TYPE_CHECKING:
    from .._context import AmbientTrace

__all__ = ["OpenTelemetryInstrumentation", "instrument_opentelemetry"]


def instrument_opentelemetry(
    client: TracengentClient | AsyncTracengentClient,
    tracer_provider: TracerProvider | None = None,
) -> OpenTelemetryInstrumentation:
    """Mirror `client`'s traces into OpenTelemetry, on `tracer_provider` (default: the global one).

    Instrumenting a client that already is returns the same instrumentation for the same provider
    and replaces it (uninstrumenting the old one) for another.
    """
    if not isinstance(client, TracengentClient | AsyncTracengentClient):
        raise TypeError(
            f"instrument_opentelemetry takes a TracengentClient or an AsyncTracengentClient, "
            f"not {type(client).__name__}"
        )
    installed = client.observer
    if isinstance(installed, _SpanObserver):
        if installed.owner.tracer_provider is tracer_provider:
            return installed.owner
        installed.owner.uninstrument()
    return OpenTelemetryInstrumentation(client, tracer_provider)


class OpenTelemetryInstrumentation:
    """A client's OpenTelemetry instrumentation (from `instrument_opentelemetry`);
    `uninstrument()` takes it off again."""

    def __init__(
        self,
        client: TracengentClient | AsyncTracengentClient,
        tracer_provider: TracerProvider | None,
    ) -> None:
        self.client = client
        self.tracer_provider = tracer_provider
        tracer = otel_trace.get_tracer("tracengent", __version__, tracer_provider=tracer_provider)
        self._observer = _SpanObserver(self, tracer, client.options.agent_id)
        client.set_observer(self._observer)

    @property
    def instrumented(self) -> bool:
        return self.client.observer is self._observer

    def uninstrument(self) -> None:
        """Stop mirroring; the spans of traces still open end now. Idempotent."""
        if self.client.observer is self._observer:  # a newer one is not ours to remove
            self.client.set_observer(None)
        self._observer.end_open_traces()


class _Trace:
    """An open trace's span, the context it was started in, and the token that made it current."""

    __slots__ = ("parent", "span", "token")

    def __init__(self, span: Span, parent: Context, token: object) -> None:
        self.span, self.parent, self.token = span, parent, token


class _Step:
    __slots__ = ("kind", "span", "token")

    def __init__(self, kind: str, span: Span, token: object) -> None:
        self.kind, self.span, self.token = kind, span, token


class _SpanObserver(Observer):
    def __init__(self, owner: OpenTelemetryInstrumentation, tracer: Tracer, agent_id: str) -> None:
        self.owner = owner
        self._tracer = tracer
        self._agent_id = agent_id
        self._lock = threading.Lock()
        self._open: weakref.WeakKeyDictionary[AmbientTrace, _Trace] = weakref.WeakKeyDictionary()
        #: trace spans closed away from the context they are current in; there, their parent counts
        self._stranded: weakref.WeakKeyDictionary[Span, Context] = weakref.WeakKeyDictionary()

    def _current(self) -> Context:
        """The current context, looking through trace spans that another context closed.

        A trace closed from another thread or task cannot detach its span where it is current,
        and without this the next trace opened there would nest under the ended one.
        """
        context = otel_context.get_current()
        if not self._stranded:
            return context
        for _ in range(64):  # a chain of stranded traces, bounded for safety
            try:
                parent = self._stranded.get(otel_trace.get_current_span(context))
            except TypeError:  # a span type that takes no weak reference is never ours
                break
            if parent is None:
                break
            context = parent
        return context

    # --- traces ---------------------------------------------------------------------------

    def trace_opened(self, trace: AmbientTrace) -> None:
        parent = self._current()
        span = self._tracer.start_span(
            f"invoke_agent {self._agent_id}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=trace_attributes(self._agent_id, trace.trace_id, trace.root_request),
        )
        token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
        with self._lock:
            self._open[trace] = _Trace(span, parent, token)

    def trace_closed(self, trace: AmbientTrace, failed: bool, summary: str | None) -> None:
        with self._lock:
            state = self._open.pop(trace, None)
        if state is None:
            return
        summary = summary if isinstance(summary, str) and summary else None
        try:
            if summary is not None:
                state.span.set_attribute("tracengent.summary", summary)
            if failed:
                state.span.set_status(Status(StatusCode.ERROR, summary or TRACE_FAILED))
        finally:
            self._release(state)

    def end_open_traces(self) -> None:
        """End the spans of open traces: their close will not be observed any more."""
        with self._lock:
            states = list(self._open.values())
            self._open.clear()
        for state in states:
            self._release(state, stranded=True)

    def _release(self, state: _Trace, stranded: bool = False) -> None:
        if not _detach(state.token) or stranded:
            with self._lock:
                self._stranded[state.span] = state.parent
            self._step_out()
        state.span.end()

    def _step_out(self) -> None:
        """Where a stranded trace span is current, make its parent current instead, as the
        trace itself does when it is closed from another context."""
        if self._stranded:
            context = self._current()
            if context is not otel_context.get_current():
                otel_context.attach(context)

    # --- steps ----------------------------------------------------------------------------

    def step_started(self, trace: AmbientTrace, kind: str, name: str) -> _Step:
        context = self._current()
        with self._lock:
            state = self._open.get(trace)
        if state is not None:
            own = state.span.get_span_context().trace_id
            if otel_trace.get_current_span(context).get_span_context().trace_id != own:
                # stepping outside the trace's context (another thread): still its child
                context = otel_trace.set_span_in_context(state.span, state.parent)
        span = start_step(self._tracer, context, kind, name, trace.trace_id)
        return _Step(kind, span, otel_context.attach(otel_trace.set_span_in_context(span, context)))

    def step_finished(
        self, step: Any, event: AgentEvent | None, error: BaseException | None
    ) -> None:
        if not isinstance(step, _Step):
            return
        try:
            if isinstance(event, AgentEvent):
                describe_step(step.span, step.kind, event)
            if error is not None:
                fail_step(step.span, error)
        finally:
            _detach(step.token)
            self._step_out()  # the trace may have been let go of while this step ran
            step.span.end()

    # --- decisions and events -------------------------------------------------------------

    def decision(self, kind: str, subject: str, decision: Decision) -> None:
        span = otel_trace.get_current_span(self._current())
        if span.is_recording():
            attributes = decision_attributes(kind, subject, decision)
            span.add_event("tracengent.decision", attributes)

    def not_enforced(self, kind: str, subject: str, decision: Decision, would: str) -> None:
        span = otel_trace.get_current_span(self._current())
        if span.is_recording():
            attributes = decision_attributes(kind, subject, decision)
            attributes["tracengent.shadow.would"] = would
            span.add_event("tracengent.shadow", attributes)

    def event_recorded(self, event: AgentEvent) -> None:
        if not isinstance(event, AgentEvent):
            return  # the client counts it as not an event
        ids = otel_trace.get_current_span(self._current()).get_span_context()
        if not ids.is_valid:
            return
        attributes = event.attributes
        if attributes is None:
            merged: dict[Any, Any] = {}
        elif isinstance(attributes, Mapping):
            try:
                merged = dict(attributes)  # a new dict: the user's stays as it was
            except Exception:  # noqa: BLE001 - a mapping that cannot be read is left alone
                return
        else:
            return  # not a mapping: nothing to merge into, and the event is the user's
        merged[OTEL_TRACE_ID] = otel_trace.format_trace_id(ids.trace_id)
        merged[OTEL_SPAN_ID] = otel_trace.format_span_id(ids.span_id)
        event.attributes = merged


def _detach(token: object) -> bool:
    """Undo an attach where it was made; elsewhere return False instead of logging an error.

    OpenTelemetry's `detach` logs "Failed to detach context" with a traceback when the token
    belongs to another context, which is exactly what a trace closed from another thread does.
    The default runtime context's tokens are `contextvars` tokens, so they are reset directly.
    """
    if isinstance(token, contextvars.Token):
        try:
            token.var.reset(token)
        except (ValueError, RuntimeError):  # another context, or already reset
            return False
        return True
    otel_context.detach(token)  # type: ignore[arg-type] # a custom runtime context's token
    return True
