"""The ambient context: the trace open where the code runs, and what it binds.

A decision trace, while open, is current in its context (a context variable, so it follows
`await`, tasks created inside it and `contextvars.copy_context().run`). What runs inside it
reads it from here without being told: flows send its id with every question, the tool gates
apply the redaction obligations its decisions bound, tracked and governed HTTP clients record
into it. This module is a leaf: it knows the trace only as `AmbientTrace`, so every module
that needs the ambient trace imports this one and not the trace's own module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._events import AgentEvent


class AmbientTrace(Protocol):
    """What the code running inside a trace may use of it."""

    @property
    def trace_id(self) -> str: ...

    @property
    def root_request(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def obligation_redactions(self) -> tuple[str, ...]:
        """redactFields of decisions taken in this trace: the tool gates apply them too."""
        ...

    def bind_redactions(self, paths: Iterable[str]) -> None:
        """Add redaction obligations for the rest of the trace (each path once)."""
        ...

    def record(self, event: AgentEvent) -> None: ...


_current: contextvars.ContextVar[AmbientTrace | None] = contextvars.ContextVar(
    "tracengent_current_trace", default=None
)


def ambient_trace() -> AmbientTrace | None:
    """The trace open in the current context, if any.

    A trace closed from another thread or context cannot unset itself there, so a closed trace
    is simply never current.
    """
    trace = _current.get()
    return None if trace is None or trace.closed else trace


def enter_trace(trace: AmbientTrace) -> contextvars.Token[AmbientTrace | None]:
    """Make `trace` current; the token lets `leave_trace` restore what was current before."""
    return _current.set(trace)


def leave_trace(trace: AmbientTrace, token: contextvars.Token[AmbientTrace | None]) -> None:
    """Stop `trace` being current here (if it is): what was current before it is again."""
    if _current.get() is not trace:
        return
    try:
        _current.reset(token)
    except ValueError:  # closed from another context than the one that opened it
        _current.set(token.old_value or None)
