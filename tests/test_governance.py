"""Nothing a tool receives leaves the process undecided; redactions apply before it leaves."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from tracengent_api.contract import EXCHANGES

from tracengent import (
    AsyncTracengentClient,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentOptions,
    async_governed_client,
    governed_client,
)

from ._fault_front import FaultFront
from ._recording import RecordingPlatform
from ._tool_server import ToolServer
from ._wire import assert_conforms

CARD_REMOVED = '[{ field = "$.card", strategy = "remove" }]'
NOT_GRANTED = "'payments:refund' is not granted to agent demo-agent"


def policy(
    *,
    agent_holds: str = "payments:*",
    approval_over: int = 300,
    refunds_bound_to: str = "payments:refund",
    redactions: str = CARD_REMOVED,
    tool_host_allowed: bool = True,
) -> str:
    """The tool server (127.0.0.1, not localhost) governed: POST /v1/refunds bound to a
    permission; its other paths allowed; refunds limited as in the demo policy."""
    # A binding's host must be allowlisted: off the list, the refunds are bound on Stripe's.
    host = "127.0.0.1" if tool_host_allowed else "api.stripe.com"
    return f"""
currency = "EUR"
unbound_paths = "allow"
egress_allowlist = ["api.stripe.com", "{host}"]

[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
ingest_key = "agk_demo"
permissions = ["{agent_holds}"]

[[agents]]
id = "agt_finance"
ingest_key = "agk_finance"
permissions = ["payments:*"]

[[limits]]
permission = "payments:refund"
max_amount = 1000
require_approval_over = {approval_over}
redact_fields = ["$.card"]

[[tools.http]]
host = "{host}"
method = "POST"
path = "/v1/refunds"
permission = "{refunds_bound_to}"
amount_field = "$.amount"
redactions = {redactions}
"""


@pytest.fixture
def platform() -> Iterator[FaultFront]:
    with FaultFront(policy()) as front:
        yield front


@pytest.fixture
def tool() -> Iterator[ToolServer]:
    with ToolServer() as server:
        yield server


def client_for(platform: FaultFront, **overrides: object) -> TracengentClient:
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": platform.url,
        "client_id": "key_demo",
        "client_secret": "ags_demo",
        "authorize_timeout_s": 2.0,
    }
    values.update(overrides)
    return TracengentClient(TracengentOptions(**values))  # type: ignore[arg-type]


# --- conformance ---------------------------------------------------------------------------


def test_tool_authorize_http_and_mcp_conform() -> None:
    recording = RecordingPlatform()
    recording.script(
        "/v1/tool-authorize",
        *[lambda _r: httpx.Response(200, json={"allowed": True, "status": "allowed"})] * 2,
    )
    options = TracengentOptions(
        agent_id="demo-agent", client_id="key_demo", client_secret="ags_demo"
    )
    stripe = httpx.MockTransport(lambda _r: httpx.Response(200, json={"id": "re_1"}))
    with TracengentClient(options, transport=recording.transport) as client:
        with governed_client(client, inner=stripe, base_url="https://api.stripe.com") as http:
            http.post(
                "/v1/refunds",
                json={"amount": 280, "card": "4242"},
                headers={"Authorization": "Bearer sk_live"},
            )
        client.tools.authorize_mcp("search_flights", {"from": "LIS", "to": "JFK"})
    http_body, mcp_body = recording.raw("/v1/tool-authorize")
    assert_conforms(http_body, EXCHANGES["tool_authorize_http"].request, ("headers",))
    assert "authorization" not in json.loads(http_body)["headers"]
    assert_conforms(mcp_body, EXCHANGES["tool_authorize_mcp"].request)


# --- the egress gate against a real tool server -------------------------------------------------


def test_an_allowed_post_reaches_the_tool_redacted(platform: FaultFront, tool: ToolServer) -> None:
    with client_for(platform) as client, governed_client(client, base_url=tool.url()) as http:
        response = http.post("/v1/refunds", json={"amount": 280, "card": "4242", "note": "café"})
    assert response.json() == {"ok": True}
    [(method, path, headers, body)] = tool.received
    assert (method, path) == ("POST", "/v1/refunds")
    assert json.loads(body) == {"amount": 280, "note": "café"}
    assert int(headers["Content-Length"]) == len(body)
    [asked] = platform.tool_requests
    assert asked["body"] == {"amount": 280, "card": "4242", "note": "café"}


def test_a_denied_or_pending_call_never_reaches_the_tool(
    platform: FaultFront, tool: ToolServer
) -> None:
    platform.use_policy(policy(agent_holds="payments:charge"))
    with client_for(platform) as client, governed_client(client, base_url=tool.url()) as http:
        with pytest.raises(ToolDeniedException) as denied:
            http.post("/v1/refunds", json={"amount": 1})
        platform.use_policy(policy(approval_over=0))
        with pytest.raises(ToolPendingApprovalException) as held:
            http.post("/v1/refunds", json={"amount": 1})
    assert denied.value.reason == NOT_GRANTED
    assert denied.value.permission == "payments:refund"
    assert denied.value.outcome == "policy_deny"
    assert held.value.approval_id
    assert tool.received == []


def test_a_redirect_to_a_denied_host_never_reaches_it(
    platform: FaultFront, tool: ToolServer
) -> None:
    target = tool.url("localhost") + "/v1/steal"
    with client_for(platform) as client, governed_client(client, follow_redirects=True) as http:
        with pytest.raises(ToolDeniedException) as denied:
            http.get(tool.url() + "/redirect?to=" + target)
    assert denied.value.outcome == "egress_deny"
    assert [path for _, path, _, _ in tool.received] == ["/redirect?to=" + target]
    assert [r["host"] for r in platform.tool_requests] == ["127.0.0.1", "localhost"]


def test_no_decision_fails_closed(platform: FaultFront, tool: ToolServer) -> None:
    platform.fail_next("/v1/tool-authorize", 503)
    with client_for(platform) as client, governed_client(client, base_url=tool.url()) as http:
        with pytest.raises(ToolDeniedException) as denied:
            http.post("/v1/refunds", json={"amount": 1})
        platform.blackhole = True
        with pytest.raises(ToolDeniedException) as timed_out:
            http.post("/v1/refunds", json={"amount": 1})
    assert "fail-closed" in denied.value.reason and "503" in denied.value.reason
    assert "did not answer in time" in timed_out.value.reason
    assert tool.received == []


def test_fail_open_proceeds_logs_and_records_it(
    platform: FaultFront, tool: ToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    platform.fail_next("/v1/tool-authorize", 500)
    caplog.set_level(logging.WARNING, logger="tracengent")
    with client_for(platform, tool_governance_fail_open=True) as client:
        with governed_client(client, base_url=tool.url()) as http:
            assert http.post("/v1/refunds", json={"amount": 1}).status_code == 200
        assert client.flush(5)
    assert len(tool.received) == 1
    assert any("ungoverned" in r.getMessage() for r in caplog.records)
    [event] = platform.events
    assert event["type"] == "error" and event["name"].startswith(
        "ungoverned POST 127.0.0.1/v1/refunds"
    )


def test_redact_fields_of_an_authorize_decision_bind_the_gates_in_its_trace(
    platform: FaultFront, tool: ToolServer
) -> None:
    # The tool decision itself redacts nothing: its permission's limit names no field.
    platform.use_policy(policy(refunds_bound_to="payments:charge", redactions="[]"))
    with client_for(platform) as client, governed_client(client, base_url=tool.url()) as http:
        with client.begin_trace("refund"):
            obligations = client.ensure_authorized("payments:refund", {"amount": 100})
            assert obligations is not None and obligations.redact_fields == ["$.card"]
            http.post("/v1/refunds", json={"amount": 100, "card": "4242"})
        http.post("/v1/refunds", json={"amount": 100, "card": "4242"})  # outside the trace
    assert [json.loads(body) for *_, body in tool.received] == [
        {"amount": 100},
        {"amount": 100, "card": "4242"},
    ]


async def test_the_async_gate_governs_the_same_way(platform: FaultFront, tool: ToolServer) -> None:
    options = TracengentOptions(agent_id="demo-agent", base_url=platform.url, ingest_key="agk_demo")
    async with AsyncTracengentClient(options) as client:
        async with async_governed_client(client, base_url=tool.url()) as http:
            await http.post("/v1/refunds", json={"amount": 280, "card": "4242"})
            platform.use_policy(policy(tool_host_allowed=False))
            with pytest.raises(ToolDeniedException):
                await http.post("/v1/refunds", json={"amount": 280})
    assert [json.loads(body) for *_, body in tool.received] == [{"amount": 280}]
