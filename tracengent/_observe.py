"""The hook an instrumentation (OpenTelemetry, …) uses to see a client's traces as they happen.

A client has no observer unless one is installed (`client.set_observer`), and every call site
checks for None first, so an uninstrumented client pays one attribute read. Observers are called on
the caller's thread and in its context (the right span is current), and they are never allowed to
break the agent: whatever one raises is swallowed by `notify`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._context import AmbientTrace
    from ._events import AgentEvent

_log = logging.getLogger("tracengent")


class Observer:
    """No-op base: an instrumentation overrides what it needs. Methods must be cheap."""

    def trace_opened(self, trace: AmbientTrace) -> None:
        """A trace became current (its `with` block starts)."""

    def trace_closed(self, trace: AmbientTrace, failed: bool, summary: str | None) -> None:
        """A trace closed with its final status and summary."""

    def step_started(self, trace: AmbientTrace, kind: str, name: str) -> Any:
        """A tracked step (tool call, LLM call, action) starts; the result is passed back to
        `step_finished`. Called before any authorization the step needs, so decisions taken for
        the step are observed inside it."""
        return None

    def step_finished(
        self, step: Any, event: AgentEvent | None, error: BaseException | None
    ) -> None:
        """The step ended: `event` is what was recorded (None if it was refused before running)."""

    def event_recorded(self, event: AgentEvent) -> None:
        """An event is about to be queued; the observer may add to its `attributes`."""

    def decision(self, kind: str, subject: str, decision: Decision) -> None:
        """An authorization (`kind="authorize"`, subject = permission) or tool-governance
        (`kind="tool"`, subject = tool or function name) decision was taken, fail-closed ones too."""

    def not_enforced(self, kind: str, subject: str, decision: Decision, would: str) -> None:
        """Shadow mode let a call through that `decision` would have refused: `would` is what
        enforcing it would have done ("deny", "hold" or "redact")."""


class Decision(Protocol):
    """What an observer reads of a decision; `AuthDecision` and `ToolDecision` both are one."""

    @property
    def allowed(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def decision_id(self) -> str | None: ...
    @property
    def approval_id(self) -> str | None: ...


class Observed(Protocol):
    """Whatever has an observer slot (a client's core)."""

    @property
    def observer(self) -> Observer | None: ...


def observe_decision(core: Observed, kind: str, subject: str, decision: Decision) -> None:
    """Tell the client's observer, if it has one, of a decision just taken."""
    if core.observer is not None:
        notify(core.observer.decision, kind, subject, decision)


def notify(method: Callable[..., Any], *args: Any) -> Any:
    """Call an observer method; an observer's failure is logged and never reaches the agent."""
    try:
        return method(*args)
    except Exception:  # noqa: BLE001 - instrumentation must never break the agent
        _log.debug("tracengent: an observer failed", exc_info=True)
        return None
