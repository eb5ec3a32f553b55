"""TRACENGENT_URL=local: both clients talk to the in-process platform, no port."""

from __future__ import annotations

import pytest

from tracengent import AgentEvent, AsyncTracengentClient, TracengentClient, TracengentOptions
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
