"""`ApprovalHandle`: a pending approval, bound to the call it was asked for (see `_approvals`).

A leaf (the standard library only), so the exceptions that carry a handle can name its type.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Literal

Kind = Literal["authorize", "tool"]
_KINDS: tuple[Kind, ...] = ("authorize", "tool")
_PREFIX = "tgap1."
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


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
