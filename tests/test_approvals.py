"""Approvals bound to the exact call, non-blocking (`wait=False`), resumed later by a handle.

Against the embedded platform (the `tracengent_platform` fixture, demo policy: a refund over
EUR 300 waits for a person) and across processes against the served one: the agent process
that asked exits, a person approves with `tracengent approve`, and a new process resumes the
stored handle.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import flask
import pytest
from fastapi import Depends, FastAPI, Request

from tracengent import (
    ApprovalHandle,
    ApprovalPendingException,
    AsyncTracengentClient,
    AuthDecision,
    NotAuthorizedException,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentOptions,
)
from tracengent.integrations import fastapi as tg_fastapi, flask as tg_flask
from tracengent.testing import PlatformRecorder

from ._fault_front import FaultFront
from ._served import served_platform

with warnings.catch_warnings():  # newer Starlette deprecates its httpx-based TestClient
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

REFUND = {"amount": 400, "currency": "EUR"}


def pending(client: object, context: dict[str, object] = REFUND) -> ApprovalPendingException:
    with pytest.raises(ApprovalPendingException) as raised:
        client.ensure_authorized("payments:refund", context, wait=False)  # type: ignore[attr-defined]
    return raised.value


def test_a_pending_decision_raises_at_once_with_a_handle_that_holds_no_secret(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(approval_timeout_s=600) as client:
        held = pending(client)
    assert isinstance(held, NotAuthorizedException)  # 0.1 code that catches this still does
    [approval] = tracengent_platform.approvals()
    assert held.approval_id == held.handle.approval_id == approval.approval_id
    assert approval.status == "pending"  # nobody waited: it is still open
    handle = held.handle
    assert (handle.kind, len(handle.digest)) == ("authorize", 64)
    assert ApprovalHandle.parse(str(handle)) == handle
    text = str(handle)
    assert "ags_demo" not in text and "agk_demo" not in text and "ey" not in text[:8]


def test_the_handle_releases_that_call_once_and_no_other(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(approval_timeout_s=600) as client:
        handle = str(pending(client).handle)  # as a job queue would keep it
        with pytest.raises(ApprovalPendingException) as again:
            client.resume_approval(handle, "payments:refund", REFUND, wait=False)
        assert again.value.handle == ApprovalHandle.parse(handle)
        tracengent_platform.approve()
        with pytest.raises(NotAuthorizedException, match="was for a different call"):
            client.resume_approval(handle, "payments:refund", {"amount": 401, "currency": "EUR"})
        with pytest.raises(NotAuthorizedException, match="was for a different call"):
            client.resume_approval(handle, "payments:charge", REFUND)
        # the same call, its keys in another order and its amount spelled 400.0: one call;
        # released with the obligations the pending decision had (the platform's approval says)
        with client.begin_trace("resumed refund") as trace:
            same = {"currency": "EUR", "amount": 400.0}
            binds = client.resume_approval(handle, "payments:refund", same)
        assert binds is not None and binds.redact_fields == ["$.card"]
        assert trace.obligation_redactions == ("$.card",)  # the gates of its trace redact it
        with pytest.raises(NotAuthorizedException, match="already released its call"):
            client.resume_approval(handle, "payments:refund", REFUND)


def test_an_approved_wait_keeps_the_pending_decisions_obligations(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(approval_poll_interval_s=0.05) as client:
        reviewer = threading.Timer(0.2, tracengent_platform.approve)
        reviewer.start()
        binds = client.ensure_authorized("payments:refund", REFUND)
        reviewer.join()
    assert binds is not None and binds.redact_fields == ["$.card"] and binds.max_amount == 1000


def test_a_refusal_says_whether_a_reviewer_refused_or_nobody_decided(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(
        approval_timeout_s=600, approval_poll_interval_s=0.05
    ) as client:
        first = pending(client).handle
        tracengent_platform.deny(first.approval_id)
        with pytest.raises(NotAuthorizedException, match="was denied by a reviewer"):
            client.resume_approval(first, "payments:refund", REFUND)
        second = pending(client, {"amount": 350, "currency": "EUR"}).handle
        with pytest.raises(
            NotAuthorizedException, match=r"timed out: no decision within 0.2s"
        ) as late:
            client.resume_approval(
                second, "payments:refund", {"amount": 350, "currency": "EUR"}, timeout=0.2
            )
        assert not isinstance(late.value, ApprovalPendingException)
        assert "denied" not in late.value.reason


def forged(fields: str) -> str:
    return "tgap1." + base64.urlsafe_b64encode(fields.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("apr_1", "it must be the text str(handle) gave"),
        ("tgap1.!!!", "its body does not decode"),
        (forged("[1]"), "it must hold four fields"),
        (forged('["apr_1","authorize","xyz",1]'), "the digest must be 64 lowercase hex digits"),
        (forged('["apr_1","tool","' + "0" * 64 + '",-1]'), "issued_at must be"),
    ],
)
def test_a_text_that_is_no_handle_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"not an approval handle: {problem}")):
        ApprovalHandle.parse(text)


def test_a_handle_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ApprovalHandle("apr_1", "authorize", "abc", 1)
    with pytest.raises(ValueError, match="the kind must be"):
        ApprovalHandle("apr_1", "refund", "0" * 64, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="approval id"):
        ApprovalHandle("apr 1\n", "authorize", "0" * 64, 1)


async def test_the_async_client_holds_and_resumes_the_same_way(
    tracengent_platform: PlatformRecorder,
) -> None:
    async with AsyncTracengentClient(tracengent_platform.options(approval_timeout_s=600)) as client:
        with pytest.raises(ApprovalPendingException) as held:
            await client.ensure_authorized("payments:refund", REFUND, wait=False)
        tracengent_platform.approve()
        handle = held.value.handle
        binds = await client.resume_approval(handle, "payments:refund", REFUND)
        assert binds is not None and binds.redact_fields == ["$.card"]
        with pytest.raises(NotAuthorizedException, match="already released"):
            await client.resume_approval(handle, "payments:refund", REFUND)


AGENT = """
import sys
from pathlib import Path
from tracengent import ApprovalPendingException, NotAuthorizedException, TracengentClient, TracengentOptions

url, step, handle_file = sys.argv[1], sys.argv[2], Path(sys.argv[3])
options = TracengentOptions(
    agent_id="demo-agent", base_url=url, client_id="key_demo", client_secret="ags_demo",
    approval_timeout_s=600,
)
refund = {"amount": 400, "currency": "EUR"}
with TracengentClient(options) as client:
    if step == "ask":
        try:
            client.ensure_authorized("payments:refund", refund, wait=False)
        except ApprovalPendingException as held:
            handle_file.write_text(str(held.handle))
            print("held", held.approval_id)
    else:
        handle = handle_file.read_text()
        for context in (dict(refund, amount=399), refund, refund):
            try:
                client.resume_approval(handle, "payments:refund", context)
                print("released", context["amount"])
            except NotAuthorizedException as refused:
                print("refused", context["amount"], refused.reason)
"""


def test_an_approval_given_in_another_process_releases_the_call_after_a_restart(
    tmp_path: Path,
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT))
    handle_file = tmp_path / "handle.txt"

    def agent(step: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, str(script), served.url, step, str(handle_file)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    with served_platform(tmp_path / "data") as served:
        [held] = agent("ask")  # this process exits with the approval still pending
        approval_id = held.split()[1]
        assert served.cli("approve", approval_id).returncode == 0
        released = agent("resume")  # a new process, the handle read from the file
    assert released[0].startswith("refused 399 ")
    assert "was for a different call" in released[0]
    assert released[1] == "released 400"
    assert released[2].startswith("refused 400 ") and "already released its call" in released[2]


def refund_amount_fastapi(request: Request) -> Awaitable[dict[str, Any]]:
    async def read() -> dict[str, Any]:
        return {"amount": (await request.json())["amount"], "currency": "EUR"}

    return read()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fastapi_answers_202_with_the_handle_and_runs_the_route_once_it_is_approved(
    tracengent_platform: PlatformRecorder, kind: str
) -> None:
    options = tracengent_platform.options(approval_timeout_s=600, approval_poll_interval_s=0.5)
    client = TracengentClient(options) if kind == "sync" else AsyncTracengentClient(options)
    app, ran = FastAPI(), []
    tg_fastapi.install_tracengent(app, client)
    gate = tg_fastapi.require_agent_permission(
        "payments:refund", context=refund_amount_fastapi, wait=False
    )

    @app.post("/refunds")
    def refund(decision: AuthDecision = Depends(gate)) -> dict[str, Any]:  # noqa: B008
        ran.append(decision.approval_id)
        return {"refunded": True}

    web = TestClient(app)
    first = web.post("/refunds", json={"amount": 400})
    assert first.status_code == 202 and ran == []
    body = first.json()
    assert body["status"] == "pending_approval" and first.headers["Retry-After"] == "1"
    assert ApprovalHandle.parse(body["handle"]).approval_id == body["approvalId"]
    again = {"Tracengent-Approval": body["handle"]}
    assert web.post("/refunds", json={"amount": 400}, headers=again).status_code == 202
    tracengent_platform.approve(body["approvalId"])
    other = web.post("/refunds", json={"amount": 999}, headers=again)
    assert other.status_code == 403 and "different call" in other.json()["reason"]
    assert web.post("/refunds", json={"amount": 400}, headers=again).status_code == 200
    assert ran == [body["approvalId"]]
    replay = web.post("/refunds", json={"amount": 400}, headers=again)
    assert replay.status_code == 403 and "already released" in replay.json()["reason"]
    forged = web.post("/refunds", json={"amount": 400}, headers={"Tracengent-Approval": "x"})
    assert forged.status_code == 403 and "not an approval handle" in forged.json()["reason"]
    assert ran == [body["approvalId"]]
    if isinstance(client, TracengentClient):
        client.close()
    else:
        asyncio.run(client.close())


def test_flask_answers_202_with_the_handle_and_runs_the_view_once_it_is_approved(
    tracengent_platform: PlatformRecorder,
) -> None:
    ran: list[str] = []
    with tracengent_platform.client(approval_timeout_s=600, approval_poll_interval_s=1) as client:
        app = flask.Flask(__name__)
        tg_flask.install_tracengent(app, client)

        @app.post("/refunds")
        @tg_flask.require_agent_permission(
            "payments:refund",
            context=lambda r: {"amount": r.get_json()["amount"], "currency": "EUR"},
            wait=False,
        )
        def refund() -> str:
            ran.append(flask.g.tracengent_decision.approval_id)
            return "refunded"

        web = app.test_client()
        first = web.post("/refunds", json={"amount": 400})
        assert first.status_code == 202 and first.headers["Retry-After"] == "1"
        body = first.get_json()
        again = {"Tracengent-Approval": body["handle"]}
        assert web.post("/refunds", json={"amount": 400}, headers=again).status_code == 202
        tracengent_platform.approve(body["approvalId"])
        assert web.post("/refunds", json={"amount": 401}, headers=again).status_code == 403
        assert web.post("/refunds", json={"amount": 400}, headers=again).status_code == 200
        assert web.post("/refunds", json={"amount": 400}, headers=again).status_code == 403
    assert ran == [body["approvalId"]]


def test_make_demo_approval_releases_the_refund_once_across_processes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACENGENT_")}
    env["TRACENGENT_DATA"] = str(tmp_path / "data")
    demo = Path(__file__).resolve().parent.parent / "samples" / "demo_approval.py"
    run = subprocess.run(
        [sys.executable, str(demo)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("agent 1: refund held for approval apr_")
    refused_other, released, refused_again = lines[-3:]
    assert refused_other.startswith("agent 2: refund of EUR 4000 refused: ")
    assert "was for a different call" in refused_other
    assert released == "agent 2: refund of EUR 400 released by the approval"
    assert refused_again.startswith("agent 2: refund of EUR 400 refused: ")
    assert "already released its call" in lines[-1]


def test_two_workers_cannot_release_one_approval_twice(
    tracengent_platform: PlatformRecorder,
) -> None:
    """The platform spends the approval: whichever worker resumes first releases the call."""
    with tracengent_platform.client(approval_timeout_s=600) as asker:
        handle = pending(asker).handle
        tracengent_platform.approve()
        with tracengent_platform.client() as other_worker:
            assert other_worker.resume_approval(handle, "payments:refund", REFUND) is not None
        with pytest.raises(NotAuthorizedException, match="already released its call"):
            asker.resume_approval(handle, "payments:refund", REFUND)
    [approval] = tracengent_platform.approvals()
    assert approval.status == "approved" and approval.released_at is not None


def release_path(approval_id: str) -> str:
    return f"/v1/approvals/{approval_id}/release"


def front_options(front: FaultFront) -> TracengentOptions:
    return TracengentOptions(
        agent_id="demo-agent",
        base_url=front.url,
        client_id="key_demo",
        client_secret="ags_demo",
        approval_timeout_s=600,
    )


def test_a_release_that_cannot_be_asked_is_a_deny_and_may_be_retried() -> None:
    with FaultFront() as front, TracengentClient(front_options(front)) as client:
        handle = pending(client).handle
        front.store.decide_approval(handle.approval_id, approved=True)
        front.fail_next(release_path(handle.approval_id), 503)
        with pytest.raises(NotAuthorizedException, match="releasing the approval failed"):
            client.resume_approval(handle, "payments:refund", REFUND)
        assert client.resume_approval(handle, "payments:refund", REFUND) is not None
        assert len(front.requests_to(release_path(handle.approval_id))) == 2


def test_a_platform_without_the_release_endpoint_keeps_the_rule_per_client() -> None:
    with FaultFront() as front, TracengentClient(front_options(front)) as client:
        handle = pending(client).handle
        front.store.decide_approval(handle.approval_id, approved=True)
        front.fail_next(release_path(handle.approval_id), 404, times=5)
        assert client.resume_approval(handle, "payments:refund", REFUND) is not None
        with pytest.raises(NotAuthorizedException, match="already released its call"):
            client.resume_approval(handle, "payments:refund", REFUND)


TRANSFER = {"amount": 3000, "to": "acct_9", "memo": "rent"}  # payments:* holds over EUR 2500


def test_a_held_function_call_is_resumed_with_that_call_only_once(
    tracengent_platform: PlatformRecorder,
) -> None:
    ran: list[Any] = []
    with tracengent_platform.client() as client:
        with pytest.raises(ToolPendingApprovalException) as held:
            client.tools.guard_function("transfer_funds", TRANSFER, ran.append)
        handle = held.value.handle
        assert handle is not None and handle.kind == "tool" and ran == []
        with pytest.raises(ToolPendingApprovalException):  # nobody decided yet
            client.tools.resume_function(str(handle), "transfer_funds", TRANSFER, ran.append)
        tracengent_platform.approve(handle.approval_id)
        with pytest.raises(ToolDeniedException, match="was for a different call"):
            client.tools.resume_function(
                handle, "transfer_funds", dict(TRANSFER, amount=4999), ran.append
            )
        with pytest.raises(ToolDeniedException, match="was for a different call"):
            client.tools.resume_mcp(handle, "transfer_funds", TRANSFER, ran.append)
        with pytest.raises(NotAuthorizedException, match="for a tool call, not an authorization"):
            client.resume_approval(handle, "payments:transfer", TRANSFER)
        client.tools.resume_function(
            handle, "transfer_funds", dict(reversed(TRANSFER.items())), ran.append
        )
        with pytest.raises(ToolDeniedException, match="already released its call"):
            client.tools.resume_function(handle, "transfer_funds", TRANSFER, ran.append)
    assert ran == [TRANSFER]


async def test_the_async_gate_resumes_a_held_mcp_call(
    tracengent_platform: PlatformRecorder,
) -> None:
    policy_call = {"amount": 3000, "to": "acct_9"}
    async with AsyncTracengentClient(tracengent_platform.options()) as client:
        with pytest.raises(ToolPendingApprovalException) as held:
            await client.tools.guard_function("transfer_funds", policy_call, lambda a: a)
        handle = held.value.handle
        assert handle is not None
        tracengent_platform.deny(handle.approval_id)
        with pytest.raises(ToolDeniedException, match="denied by a reviewer"):
            await client.tools.resume_function(handle, "transfer_funds", policy_call, lambda a: a)
