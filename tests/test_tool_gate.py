"""client.tools: MCP and function calls run only when allowed, with redacted arguments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tracengent import (
    AsyncTracengentClient,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentOptions,
)

from ._fault_front import FaultFront

# A passport masked, a memo removed, a tool the agent may not use, one that waits for a person.
POLICY = """
currency = "EUR"

[[agents]]
id = "demo-agent"
ingest_key = "agk_demo"
permissions = ["flights:*", "hotels:*", "funds:*"]

[[agents]]
id = "agt_admin"
ingest_key = "agk_admin"
permissions = ["admin:*"]

[[limits]]
permission = "hotels:book"
require_approval_over = 0

[[tools.mcp]]
name = "search_flights"
permission = "flights:search"
redactions = [{ field = "$.passport", strategy = "mask" }]

[[tools.mcp]]
name = "book_hotel"
permission = "hotels:book"
amount_field = "$.amount"

[[tools.function]]
name = "transfer_funds"
permission = "funds:transfer"
redactions = [{ field = "$.memo", strategy = "remove" }]

[[tools.function]]
name = "wipe_disk"
permission = "admin:wipe"
"""
NOT_GRANTED = "'admin:wipe' is not granted to agent demo-agent"


@pytest.fixture
def platform() -> Iterator[FaultFront]:
    with FaultFront(POLICY) as front:
        yield front


def options(platform: FaultFront) -> TracengentOptions:
    return TracengentOptions(agent_id="demo-agent", base_url=platform.url, ingest_key="agk_demo")


def test_guard_mcp_and_function(platform: FaultFront) -> None:
    calls: list[object] = []
    with TracengentClient(options(platform)) as client:
        gate = client.tools
        assert gate is client.tools
        result = gate.guard_mcp(
            "search_flights",
            {"from": "LIS", "passport": "X123"},
            lambda a: calls.append(a) or "found",
        )
        assert result == "found"
        gate.guard_function(
            "transfer_funds", {"to": "acct_1", "amount": 50, "memo": "rent"}, calls.append
        )
        with pytest.raises(ToolDeniedException) as denied:
            gate.guard_function("wipe_disk", {}, calls.append)
        with pytest.raises(ToolPendingApprovalException):
            gate.guard_mcp("book_hotel", {"city": "LIS", "amount": 120}, calls.append)
        guard = gate.authorize_function("wipe_disk")
    assert calls == [{"from": "LIS", "passport": "***REDACTED***"}, {"to": "acct_1", "amount": 50}]
    assert (denied.value.reason, denied.value.permission) == (NOT_GRANTED, "admin:wipe")
    assert guard.allowed is False and guard.decision.status == "denied"
    assert [r["transport"] for r in platform.tool_requests] == [
        "mcp",
        "function",
        "function",
        "mcp",
        "function",
    ]
    assert platform.tool_requests[0]["toolName"] == "search_flights"
    assert platform.tool_requests[1]["functionName"] == "transfer_funds"


def test_the_governed_decorator(platform: FaultFront) -> None:
    with TracengentClient(options(platform)) as client:

        @client.tools.governed()
        def transfer_funds(to: str, amount: int, memo: str = "none") -> tuple[str, int, str]:
            return to, amount, memo

        @client.tools.governed(name="wipe_disk")
        def wipe() -> str:
            raise AssertionError("must not run")

        assert transfer_funds("acct_1", 50, memo="rent") == ("acct_1", 50, "none")
        with pytest.raises(ToolDeniedException):
            wipe()
    assert platform.tool_requests[0]["body"] == {"to": "acct_1", "amount": 50, "memo": "rent"}


def test_an_unreachable_platform_never_lets_a_tool_run(platform: FaultFront) -> None:
    platform.down = True
    ran: list[int] = []
    with TracengentClient(options(platform)) as client:
        with pytest.raises(ToolDeniedException) as denied:
            client.tools.guard_mcp("search_flights", {}, lambda _a: ran.append(1))
    assert ran == [] and "fail-closed" in denied.value.reason


async def test_the_async_gate(platform: FaultFront) -> None:
    async with AsyncTracengentClient(options(platform)) as client:
        gate = client.tools

        async def search(arguments: dict[str, str]) -> dict[str, str]:
            return arguments

        assert await gate.guard_mcp("search_flights", {"passport": "X"}, search) == {
            "passport": "***REDACTED***"
        }

        @gate.governed()
        async def transfer_funds(to: str, memo: str) -> str:
            return f"{to}:{memo}"

        @gate.governed(name="wipe_disk")
        async def wipe() -> None:
            raise AssertionError("must not run")

        assert await transfer_funds("acct_1", "rent") == "acct_1:None"
        with pytest.raises(ToolDeniedException):
            await wipe()
        guard = await gate.authorize_mcp("book_hotel", {"city": "LIS", "amount": 120})
        assert guard.decision.pending
