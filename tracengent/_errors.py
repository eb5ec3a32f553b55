"""The SDK's exception tree: one root, and exceptions that carry their data.

`except TracengentError` catches everything the SDK raises on purpose (a refusal, a held call,
a refused delegation, unusable options); each exception keeps what a caller decides on as
attributes (`.reason`, `.permission`, `.approval_id`, `.status_code`, …) rather than only in its
message. The 0.1 names and base classes are kept: `TracengentConfigError` is still a
`ValueError`, and every other one is still an `Exception` a 0.1 `except` clause catches.

This module imports nothing of the SDK's, so any module may raise from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._approval_handle import ApprovalHandle


class TracengentError(Exception):
    """The root of every exception the SDK raises on purpose.

    `reason` says why in words a person (or a model) can act on; `status_code` is the HTTP status
    of the platform answer that caused it, when one did.
    """

    reason: str
    status_code: int | None

    def __init__(self, message: str, *, reason: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions cross process pools and task queues: rebuild from the attributes, not from
        # the message (whose shape differs from each subclass's constructor).
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[TracengentError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class NotAuthorizedException(TracengentError):
    """Raised by `ensure_authorized` when an action is not permitted."""

    def __init__(self, permission: str, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(
            f"Not authorized for '{permission}': {reason}", reason=reason, status_code=status_code
        )
        self.permission = permission


class ToolDeniedException(TracengentError):
    """A tool call was refused (by policy, the egress allowlist, or for want of a decision)."""

    def __init__(
        self, reason: str, permission: str | None = None, outcome: str | None = None
    ) -> None:
        suffix = "" if permission is None else f" for '{permission}'"
        super().__init__(f"Tool call denied{suffix}: {reason}", reason=reason)
        self.permission = permission
        self.outcome = outcome


class ToolPendingApprovalException(TracengentError):
    """A tool call is held until a person approves it; it was not made.

    `handle` (an MCP tool or function call's) resumes it later: `client.tools.resume_mcp(...)` /
    `resume_function(...)`; None for a call no handle can bind (an HTTP request, for now)."""

    def __init__(
        self, approval_id: str | None, reason: str, handle: ApprovalHandle | None = None
    ) -> None:
        super().__init__(f"Tool call awaiting approval: {reason}", reason=reason)
        self.approval_id = approval_id
        self.handle = handle


class DelegationException(TracengentError):
    """An attenuation (agent-to-agent hop) was refused, locally or by the platform."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason, status_code=status_code)


class TracengentConfigError(TracengentError, ValueError):
    """The options cannot work; each entry of ``problems`` names one option and how to fix it."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.args = problems
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        listed = "\n".join(f"  - {p}" for p in self.problems)
        return f"{len(self.problems)} problems with the Tracengent options:\n{listed}"
