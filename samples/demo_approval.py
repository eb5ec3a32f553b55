"""A non-blocking approval, resumed later by another process.

    python samples/demo_approval.py          # or: make demo-approval

1. An agent process asks to refund EUR 400 (over the demo policy's EUR 300 approval threshold)
   with `wait=False`: it is not held while a person decides. It stores the approval's handle in a
   file (a job queue or a database row would do) and exits.
2. A reviewer approves it with `tracengent approve <id>`.
3. A new agent process reads the handle and resumes: the approval releases exactly that refund,
   once; the same handle with another amount, or a second time, is refused.

The platform is the embedded local one, its data in a temporary directory (or $TRACENGENT_DATA).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tracengent import (
    ApprovalPendingException,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
)

REFUND = {"amount": 400, "currency": "EUR"}


def agent(step: str, handle_file: Path) -> None:
    with TracengentClient(TracengentOptions.local()) as client:
        if step == "ask":
            try:
                client.ensure_authorized("payments:refund", REFUND, wait=False)
            except ApprovalPendingException as held:
                handle_file.write_text(str(held.handle))
                print(
                    f"agent 1: refund held for approval {held.approval_id}; handle stored, exiting"
                )
                print(f"APPROVAL {held.approval_id}")
            return
        handle = handle_file.read_text()
        for context in ({"amount": 4000, "currency": "EUR"}, REFUND, REFUND):
            try:
                client.resume_approval(handle, "payments:refund", context)
                print(f"agent 2: refund of EUR {context['amount']} released by the approval")
            except NotAuthorizedException as refused:
                print(f"agent 2: refund of EUR {context['amount']} refused: {refused.reason}")


def main() -> None:
    if len(sys.argv) == 3:  # a phase, run as its own process
        agent(sys.argv[1], Path(sys.argv[2]))
        return
    data = os.environ.get("TRACENGENT_DATA") or tempfile.mkdtemp(prefix="tracengent-demo-")
    env = {**os.environ, "TRACENGENT_DATA": data}
    handle_file = Path(data) / "approval-handle.txt"

    def phase(step: str) -> str:
        run = subprocess.run(
            [sys.executable, __file__, step, str(handle_file)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(run.stdout, end="")
        return run.stdout

    asked = phase("ask")
    approval_id = next(
        line.split()[1] for line in asked.splitlines() if line.startswith("APPROVAL")
    )
    subprocess.run(
        [sys.executable, "-m", "tracengent.cli", "approve", approval_id, "--data", data],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    print(f"reviewer: approved {approval_id} (tracengent approve)")
    phase("resume")


if __name__ == "__main__":
    main()
