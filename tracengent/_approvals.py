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

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import rfc8785

from ._errors import NotAuthorizedException
from ._tool_args import UnreadableArguments, to_json_arguments

Kind = Literal["authorize", "tool"]
_KINDS: tuple[Kind, ...] = ("authorize", "tool")
_PREFIX = "tgap1."
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def authorize_digest(permission: str, context: Mapping[str, Any] | None) -> str:
    """The digest of an authorization: its permission and its context, canonical JSON.

    Raises `UnreadableArguments` for a context that is not JSON (such a context is never sent:
    `context_problem` refuses it first)."""
    asked = {"kind": "authorize", "permission": permission, "context": _json(context)}
    return hashlib.sha256(rfc8785.dumps(asked)).hexdigest()


def _json(value: Any) -> Any:
    return None if value is None else to_json_arguments(value, "context")


@dataclass(frozen=True, slots=True)
class ApprovalHandle:
    """A pending approval, bound to the call it was asked for; `str()` and `parse()` round-trip.

    It holds the approval id, the kind of call ("authorize" or "tool"), the call's digest and
    when it was issued (seconds since the epoch), and no secret.
    """

    approval_id: str
    kind: Kind
    digest: str
    issued_at: int

    def __post_init__(self) -> None:
        problem = _problem(self.approval_id, self.kind, self.digest, self.issued_at)
        if problem is not None:
            raise ValueError(f"not an approval handle: {problem}")

    @classmethod
    def issue(cls, approval_id: str, kind: Kind, digest: str) -> ApprovalHandle:
        return cls(approval_id, kind, digest, int(time.time()))

    def __str__(self) -> str:
        fields = [self.approval_id, self.kind, self.digest, self.issued_at]
        packed = json.dumps(fields, separators=(",", ":")).encode()
        return _PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> ApprovalHandle:
        """The handle `str(handle)` made; a `ValueError` saying what is wrong for anything else."""
        if not isinstance(text, str) or not text.startswith(_PREFIX) or len(text) > 1000:
            raise ValueError("not an approval handle: it must be the text str(handle) gave")
        body = text[len(_PREFIX) :]
        try:
            fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            raise ValueError("not an approval handle: its body does not decode") from None
        if not isinstance(fields, list) or len(fields) != 4:
            raise ValueError("not an approval handle: it must hold four fields")
        return cls(*fields)


def parse_handle(handle: ApprovalHandle | str) -> ApprovalHandle:
    """A handle, or the text of one (`ApprovalHandle.parse`)."""
    return handle if isinstance(handle, ApprovalHandle) else ApprovalHandle.parse(handle)


def _problem(approval_id: object, kind: object, digest: object, issued_at: object) -> str | None:
    if not isinstance(approval_id, str) or not _ID.fullmatch(approval_id):
        return "the approval id must be 1-200 letters, digits or _.:-"
    if kind not in _KINDS:
        return f"the kind must be one of {', '.join(_KINDS)}"
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return "the digest must be 64 lowercase hex digits"
    if isinstance(issued_at, bool) or not isinstance(issued_at, int) or issued_at < 0:
        return "issued_at must be a whole number of seconds >= 0"
    return None


class ApprovalPendingException(NotAuthorizedException):
    """`ensure_authorized(..., wait=False)` (or `resume_approval`) met an approval nobody has
    decided yet; `handle` resumes the call later (`client.resume_approval(handle, ...)`).

    A subclass of `NotAuthorizedException`, so code that catches that still does.
    """

    def __init__(self, permission: str, reason: str, handle: ApprovalHandle) -> None:
        super().__init__(permission, reason)
        self.approval_id = handle.approval_id
        self.handle = handle


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
