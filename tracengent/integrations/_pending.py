"""The web bindings' answer to a decision still waiting for a person, when `wait=False`.

A worker is not held while someone decides: the request is answered `202` with
`{"status": "pending_approval", "approvalId": ..., "handle": ...}` and `Retry-After`. The caller
sends the same request again with the handle in the `Tracengent-Approval` header; the binding
then resumes that approval (`resume_approval`), which releases the call only if it is the one the
approval was asked for, once. Shared by FastAPI and Flask: what differs is only how they answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._approval_handle import ApprovalHandle
from .._approvals import authorize_digest
from .._authorization import AuthDecision
from .._options import TracengentOptions
from .._wire import APPROVAL_ID

#: The request header that brings a pending approval's handle back.
HANDLE_HEADER = "Tracengent-Approval"


def pending_answer(
    decision: AuthDecision, permission: str, context: Mapping[str, Any] | None
) -> tuple[dict[str, str], ApprovalHandle] | None:
    """The 202 body and the handle for a pending `decision`; None for any other decision."""
    if not decision.pending or decision.approval_id is None:
        return None
    digest = authorize_digest(permission, context)
    handle = ApprovalHandle.issue(decision.approval_id, "authorize", digest)
    return held_body(handle), handle


def held_body(handle: ApprovalHandle) -> dict[str, str]:
    return {"status": "pending_approval", APPROVAL_ID: handle.approval_id, "handle": str(handle)}


def retry_after(options: TracengentOptions) -> str:
    """When to come back: the client's own poll interval, in whole seconds (at least 1)."""
    return str(max(1, math.ceil(options.approval_poll_interval_s)))


def approved(handle: ApprovalHandle, obligations: Any) -> AuthDecision:
    """The decision a resumed, approved call hands the view."""
    return AuthDecision(
        allowed=True,
        status="allowed",
        reason="approved",
        obligations=obligations,
        approval_id=handle.approval_id,
    )
