"""authorize / ensure_authorized / wait_for_approval: fail closed, say why, keep obligations."""

from __future__ import annotations

import httpx
import pytest

from tracengent import (
    AsyncTracengentClient,
    AuthDecision,
    NotAuthorizedException,
    TracengentClient,
    TracengentOptions,
)

from ._recording import RecordingPlatform

OPTIONS = {
    "agent_id": "demo-agent",
    "ingest_key": "agk_demo",
    "approval_poll_interval_s": 0.01,
    "approval_timeout_s": 0.5,
    "authorize_timeout_s": 0.5,
}
PENDING = {
    "allowed": False,
    "status": "pending_approval",
    "reason": "over 300",
    "approvalId": "apr_1",
    "decisionId": "dec_2",
}
ALLOW_WITH_OBLIGATIONS = {
    "allowed": True,
    "status": "allowed",
    "reason": "ok",
    "decisionId": "dec_1",
    "actingFor": "u_1",
    "chain": ["u_1", "demo-agent"],
    "obligations": {"maxAmount": 500, "currency": "EUR", "redactFields": ["$.card"]},
}


def json_answer(body: object, status: int = 200) -> object:
    return lambda _r: httpx.Response(status, json=body)


def client_for(platform: RecordingPlatform) -> TracengentClient:
    return TracengentClient(TracengentOptions(**OPTIONS), transport=platform.transport)  # type: ignore[arg-type]


def test_a_decision_is_read_whole() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", json_answer(ALLOW_WITH_OBLIGATIONS))
    with client_for(platform) as client:
        decision = client.authorize("payments:refund", {"amount": 280, "currency": "EUR"})
    assert decision.allowed and not decision.pending
    assert (decision.decision_id, decision.acting_for, decision.chain) == (
        "dec_1",
        "u_1",
        ["u_1", "demo-agent"],
    )
    assert decision.obligations is not None
    assert (decision.obligations.max_amount, decision.obligations.currency) == (500, "EUR")
    assert decision.obligations.redact_fields == ["$.card"]


@pytest.mark.parametrize(
    ("answer", "reason_has"),
    [
        (lambda r: httpx.Response(503, text="maintenance"), "503"),
        (
            lambda r: httpx.Response(403, json={"error": "forbidden", "reason": "agent suspended"}),
            "agent suspended",
        ),
        (lambda r: httpx.Response(200, text="<html>"), "not a valid AuthorizeResponse"),
        (lambda r: httpx.Response(200, json={"allowed": "yes"}), "not a valid AuthorizeResponse"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), "unreachable"),
        (
            lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
            "did not answer in time",
        ),
    ],
)
def test_every_failure_to_decide_is_a_deny_naming_the_cause(
    answer: object, reason_has: str
) -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", answer)  # type: ignore[arg-type]
    with client_for(platform) as client:
        decision = client.authorize("payments:refund")
    assert decision.allowed is False
    assert decision.status == "denied"
    assert reason_has in decision.reason


def test_an_allowed_flag_with_another_status_is_not_an_allow() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", json_answer({"allowed": True, "status": "pending_approval"}))
    with client_for(platform) as client:
        assert client.authorize("x").allowed is False


def test_an_invalid_context_is_a_deny_before_sending() -> None:
    platform = RecordingPlatform()
    with client_for(platform) as client:
        decision = client.authorize("x", {"amount": "a lot"})
    assert not decision.allowed and "context is not valid" in decision.reason
    assert platform.raw("/v1/authorize") == []


@pytest.mark.parametrize(
    ("status", "allowed", "reason_has"),
    [
        ("approved", True, "approved"),
        ("denied", False, "denied by a reviewer"),
        ("expired", False, "timed out"),
    ],
)
def test_ensure_authorized_waits_for_the_approval(
    status: str, allowed: bool, reason_has: str
) -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", json_answer(PENDING))
    platform.script(
        "/v1/approvals/apr_1", json_answer({"status": "pending"}), json_answer({"status": status})
    )
    with client_for(platform) as client:
        if allowed:
            assert client.ensure_authorized("payments:refund", {"amount": 400}) is None
        else:
            with pytest.raises(NotAuthorizedException) as denied:
                client.ensure_authorized("payments:refund", {"amount": 400})
            assert reason_has in denied.value.reason
            assert denied.value.permission == "payments:refund"
    assert len(platform.raw("/v1/approvals/apr_1")) == 2


def test_an_approval_that_never_comes_times_out_as_a_timeout() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/approvals/apr_9", *[json_answer({"status": "pending"})] * 1000)
    with client_for(platform) as client:
        decision = client.wait_for_approval(
            "payments:refund", "apr_9", timeout=0.2, poll_interval=0.02
        )
    assert decision.allowed is False
    assert "timed out" in decision.reason and "no decision within 0.2s" in decision.reason


def test_an_allow_over_its_own_max_amount_is_a_deny() -> None:
    platform = RecordingPlatform()
    platform.script(
        "/v1/authorize", json_answer(ALLOW_WITH_OBLIGATIONS), json_answer(ALLOW_WITH_OBLIGATIONS)
    )
    with client_for(platform) as client:
        with pytest.raises(NotAuthorizedException) as denied:
            client.ensure_authorized("payments:refund", {"amount": 900, "currency": "EUR"})
        assert "exceeds the decision's maxAmount 500 EUR" in denied.value.reason
        obligations = client.ensure_authorized(
            "payments:refund", {"amount": 900, "currency": "USD"}
        )
    assert obligations is not None and obligations.redact_fields == ["$.card"]


def test_from_wire_keeps_0_1_dict_input_working() -> None:
    decision = AuthDecision.from_wire({"allowed": False, "status": "quarantined", "reason": "new"})
    assert (decision.allowed, decision.status, decision.pending) == (False, "quarantined", False)


async def test_the_async_client_decides_the_same_way() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", json_answer(PENDING), json_answer(ALLOW_WITH_OBLIGATIONS))
    platform.script("/v1/approvals/apr_1", json_answer({"status": "approved"}))
    async with AsyncTracengentClient(
        TracengentOptions(**OPTIONS),  # type: ignore[arg-type]
        transport=platform.transport,
    ) as client:
        obligations = await client.ensure_authorized("payments:refund", {"amount": 400})
        decision = await client.authorize("payments:refund", {"amount": 100})
        assert await client.has_permission("x") is False
    assert obligations is None
    assert decision.allowed and decision.acting_for == "u_1"
