"""Approvals bound to the exact call they were asked for, resumable later, in another process.

A web worker cannot hold a request for five minutes while a person decides. With `wait=False`,
a pending decision raises `ApprovalPendingException` at once, carrying an `ApprovalHandle`: the
approval id, the kind of call, a digest of exactly what was asked and when it was issued — no
secret, so a job queue or a database row can keep `str(handle)`. `resume_approval(handle, …)`
releases the call later only when the call presented is the one the approval was for (the same
digest), the approval is approved, and this client has not released a call with it before.

The digest is the SHA-256 of the RFC 8785 canonical JSON of what was asked, so the same
permission and context give the same digest in any process, whatever the key order or number
spelling; an amount changed by one cent is another call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from ._approval_handle import ApprovalHandle
from ._errors import NotAuthorizedException
from ._tool_args import UnreadableArguments, to_json_arguments


def authorize_digest(permission: str, context: Mapping[str, Any] | None) -> str:
    """The digest of an authorization: its permission and its context, canonical JSON.

    Raises `UnreadableArguments` for a context that is not JSON (such a context is never sent:
    `context_problem` refuses it first)."""
    asked = {"kind": "authorize", "permission": permission, "context": _json(context)}
    return hashlib.sha256(rfc8785.dumps(asked)).hexdigest()


def tool_digest(transport: str, name: str, arguments: Any) -> str:
    """The digest of an MCP tool or function call: its transport, name and JSON arguments."""
    asked = {"kind": "tool", "transport": transport, "name": name, "body": arguments}
    return hashlib.sha256(rfc8785.dumps(asked)).hexdigest()


def _json(value: Any) -> Any:
    return None if value is None else to_json_arguments(value, "context")


class ApprovalPendingException(NotAuthorizedException):
    """`ensure_authorized(..., wait=False)` (or `resume_approval`) met an approval nobody has
    decided yet; `handle` resumes the call later (`client.resume_approval(handle, ...)`).

    A subclass of `NotAuthorizedException`, so code that catches that still does.
    """

    def __init__(self, permission: str, reason: str, handle: ApprovalHandle) -> None:
        super().__init__(permission, reason)
        self.approval_id = handle.approval_id
        self.handle = handle


def tool_resume_problem(
    handle: ApprovalHandle, transport: str, name: str, arguments: Any, released: set[str]
) -> str | None:
    """Why `handle` cannot release this tool call, before the platform is asked; None if it may."""
    if handle.kind != "tool":
        return f"approval {handle.approval_id} was for an authorization, not a tool call"
    if tool_digest(transport, name, arguments) != handle.digest:
        return (
            f"approval {handle.approval_id} was for a different call: the tool or its arguments "
            "are not the ones it was asked for"
        )
    return _released(handle, released)


def _released(handle: ApprovalHandle, released: set[str]) -> str | None:
    if handle.approval_id in released:
        return f"approval {handle.approval_id} already released its call: an approval releases one"
    return None


def resume_problem(
    handle: ApprovalHandle,
    permission: str,
    context: Mapping[str, Any] | None,
    released: set[str],
) -> str | None:
    """Why `handle` cannot release this call, before the platform is asked; None if it may."""
    if handle.kind != "authorize":
        return f"approval {handle.approval_id} was for a tool call, not an authorization"
    try:
        digest = authorize_digest(permission, context)
    except UnreadableArguments as error:
        return f"the context is not valid ({error})"
    if digest != handle.digest:
        return (
            f"approval {handle.approval_id} was for a different call: the permission or the "
            "context is not the one it was asked for"
        )
    if handle.approval_id in released:
        return f"approval {handle.approval_id} already released its call: an approval releases one"
    return None
