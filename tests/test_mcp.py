"""tracengent.integrations.mcp against a real MCP server (the `mcp` package's MCPServer, over its
in-memory JSON-RPC transport) and the embedded local platform (`tracengent_platform`) deciding with
the inline policy below."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client, ClientSession
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    ToolDeniedException,
    ToolPendingApprovalException,
    TracengentClient,
    TracengentOptions,
)
from tracengent._context import AmbientTrace
from tracengent._observe import Decision, Observer
from tracengent.integrations.mcp import GovernedSession, governed_session
from tracengent.testing import PlatformRecorder

POLICY = """
currency = "EUR"
unbound_tools = "deny"

[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
permissions = ["payments:charge", "payments:refund", "crm:read"]

[[agents]]
id = "crm-admin"
ingest_key = "agk_admin"
permissions = ["crm:*"]

[[limits]]
permission = "payments:charge"
require_approval_over = 500

[[limits]]
permission = "payments:refund"
redact_fields = ["$.email"]

[[tools.mcp]]
name = "charge_card"
permission = "payments:charge"
amount_field = "$.amount"
redactions = [{ field = "$.card", strategy = "remove" }]

[[tools.mcp]]
name = "lookup_customer"
permission = "crm:read"

[[tools.mcp]]
name = "slow_lookup"
permission = "crm:read"

[[tools.mcp]]
name = "delete_customer"
permission = "crm:delete"
"""

CARD = "4111 1111 1111 1111"
EMAIL = "ada@example.com"


class Shop:
    """An MCP server whose tools record every call they receive (arguments as sent)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.server = server = MCPServer("shop")

        @server.tool()
        def charge_card(
            amount: float, currency: str = "EUR", card: str | None = None, email: str | None = None
        ) -> dict[str, Any]:
            sent = {"amount": amount, "currency": currency, "card": card, "email": email}
            self.received.append(("charge_card", {k: v for k, v in sent.items() if v is not None}))
            return {"charged": amount, "currency": currency}

        @server.tool()
        async def lookup_customer(customer_id: str, ctx: Context) -> str:
            self.received.append(("lookup_customer", {"customer_id": customer_id}))
            await ctx.report_progress(1, 1, "found")
            if customer_id == "ghost":
                raise ToolError(f"no customer {customer_id}")
            return f"customer {customer_id}"

        @server.tool()
        async def slow_lookup(customer_id: str) -> str:
            self.received.append(("slow_lookup", {"customer_id": customer_id}))
            await anyio.sleep(0.2)
            return customer_id

        @server.tool()
        def delete_customer(customer_id: str) -> str:
            self.received.append(("delete_customer", {"customer_id": customer_id}))
            return "deleted"

        @server.tool()
        def wipe_disk() -> str:  # exists on the server, bound to nothing in the policy
            self.received.append(("wipe_disk", {}))
            return "wiped"


@pytest.fixture
def tracengent_policy() -> str:
    return POLICY


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
def client(async_tracengent_client: AsyncTracengentClient) -> AsyncTracengentClient:
    """The kit's client of the platform, signed in as demo-agent; closed after the test."""
    return async_tracengent_client


@asynccontextmanager
async def connected(shop: Shop) -> AsyncIterator[ClientSession]:
    """A real `ClientSession` to the shop, over the in-memory transport (legacy: JSON-RPC)."""
    with anyio.fail_after(10):
        async with Client(shop.server, mode="legacy") as mcp_client:
            yield mcp_client.session


# --- allowed -------------------------------------------------------------------------------------


async def test_an_allowed_call_is_sent_redacted_and_recorded_in_the_trace(
    shop: Shop, client: AsyncTracengentClient, tracengent_platform: PlatformRecorder
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        async with client.begin_trace("charge the customer") as trace:
            # redactFields of a decision taken in the trace bind the rest of it
            await client.ensure_authorized("payments:refund", {"amount": 10})
            arguments = {"amount": 120, "currency": "EUR", "card": CARD, "email": EMAIL}
            result = await session.call_tool("charge_card", arguments)

    assert shop.received == [("charge_card", {"amount": 120.0, "currency": "EUR"})]
    assert arguments["card"] == CARD  # the caller's arguments are not mutated
    assert result.structured_content == {"charged": 120.0, "currency": "EUR"}
    [event] = tracengent_platform.events(trace.trace_id, type="tool_call")
    assert (event["name"], event["status"]) == ("charge_card", "success")
    assert event["input"] == {"amount": 120, "currency": "EUR"}
    assert event["output"] == {"charged": 120.0, "currency": "EUR"}
    assert isinstance(event["durationMs"], int)
    assert CARD not in json.dumps(tracengent_platform.events()) and EMAIL not in json.dumps(event)
    [call] = tracengent_platform.assert_tool_allowed("charge_card", trace.trace_id)
    assert tracengent_platform.tool_calls(trace.trace_id) == [call]  # the only tool decision
    decision = call.decision
    assert (call.transport, decision.permission, decision.status) == (
        "mcp",
        "payments:charge",
        "allowed",
    )
    assert event["attributes"] == {"transport": "mcp", "decisionId": decision.decision_id}


async def test_outside_a_trace_the_event_names_the_transport_and_the_decision(
    shop: Shop, client: AsyncTracengentClient, tracengent_platform: PlatformRecorder
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        result = await session.call_tool("lookup_customer", {"customer_id": "c1"})

    assert [block.text for block in result.content] == ["customer c1"]  # type: ignore[union-attr]
    [event] = tracengent_platform.events(type="tool_call")
    [call] = tracengent_platform.assert_tool_allowed("lookup_customer")
    decision = call.decision
    assert tracengent_platform.decisions() == [decision]
    assert (event["status"], event["output"]) == ("success", {"result": "customer c1"})
    assert event["attributes"] == {"transport": "mcp", "decisionId": decision.decision_id}


# --- refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("delete_customer", {"customer_id": "c1", "card": CARD}),  # bound, permission not held
        ("wipe_disk", {"card": CARD}),  # not bound, and unbound_tools = "deny"
    ],
)
async def test_a_denied_call_never_reaches_the_server(
    shop: Shop,
    client: AsyncTracengentClient,
    tracengent_platform: PlatformRecorder,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        with pytest.raises(ToolDeniedException) as denied:
            await session.call_tool(tool, arguments)

    assert shop.received == []
    assert denied.value.reason
    [call] = tracengent_platform.assert_tool_denied(tool)
    decision = call.decision
    assert tracengent_platform.decisions() == [decision]
    assert (decision.status, decision.reason) == ("denied", denied.value.reason)
    [event] = tracengent_platform.events(type="tool_call")
    assert (event["name"], event["status"]) == (tool, "failure")
    assert denied.value.reason in event["output"]["error"]
    assert event.get("input") is None  # a refusal carries no redactions: nothing is recorded
    assert CARD not in json.dumps(event)
    assert event["attributes"] == {"transport": "mcp", "decisionId": decision.decision_id}


async def test_a_call_over_the_approval_threshold_is_held(
    shop: Shop, client: AsyncTracengentClient, tracengent_platform: PlatformRecorder
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        async with client.begin_trace("a large charge") as trace:
            with pytest.raises(ToolPendingApprovalException) as held:
                await session.call_tool("charge_card", {"amount": 900, "card": CARD})

    assert shop.received == []
    [approval] = tracengent_platform.approvals()
    assert held.value.approval_id == approval.approval_id
    assert (approval.status, approval.permission) == ("pending", "payments:charge")
    [call] = tracengent_platform.tool_calls(trace.trace_id)
    assert (call.tool, call.verdict, call.decision.approval_id) == (
        "charge_card",
        "pending",
        approval.approval_id,
    )
    [event] = tracengent_platform.events(trace.trace_id, type="tool_call")
    assert event["status"] == "failure" and event.get("input") is None


async def test_an_unreachable_platform_fails_closed(shop: Shop) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = TracengentOptions(
        agent_id="demo-agent",
        base_url=f"http://127.0.0.1:{port}",
        client_id="key_demo",
        client_secret="ags_demo",
        authorize_timeout_s=1.0,
        max_retries=0,
    )
    client = AsyncTracengentClient(options)
    try:
        async with connected(shop) as raw:
            with pytest.raises(ToolDeniedException, match="fail-closed"):
                await governed_session(client, raw).call_tool(
                    "lookup_customer", {"customer_id": "1"}
                )
    finally:
        await client.close(timeout=0.5)
    assert shop.received == []


# --- results and errors --------------------------------------------------------------------------


async def test_a_tool_error_result_is_returned_and_recorded_as_a_failure(
    shop: Shop, client: AsyncTracengentClient, tracengent_platform: PlatformRecorder
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        async with client.begin_trace("look up a ghost") as trace:
            result = await session.call_tool("lookup_customer", {"customer_id": "ghost"})

    assert result.is_error
    assert shop.received == [("lookup_customer", {"customer_id": "ghost"})]
    [event] = tracengent_platform.events(trace.trace_id, type="tool_call")
    assert event["status"] == "failure"
    assert "no customer ghost" in event["output"]["error"]
    assert event["input"] == {"customer_id": "ghost"}


async def test_other_arguments_are_forwarded_and_a_session_error_is_recorded_and_raised(
    shop: Shop, client: AsyncTracengentClient, tracengent_platform: PlatformRecorder
) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with connected(shop) as raw:
        session = governed_session(client, raw)
        await session.call_tool("lookup_customer", {"customer_id": "c1"}, None, on_progress)
        with pytest.raises(MCPError):  # read_timeout_seconds, positionally: the server is slower
            await session.call_tool("slow_lookup", {"customer_id": "c2"}, 0.05)

    assert progress == [(1, 1, "found")]
    assert [name for name, _ in shop.received] == ["lookup_customer", "slow_lookup"]
    ok, failed = tracengent_platform.events(type="tool_call")
    assert (ok["status"], failed["status"]) == ("success", "failure")
    assert (failed["name"], failed["input"]) == ("slow_lookup", {"customer_id": "c2"})


async def test_the_sync_client_authorizes_in_a_worker_thread(
    shop: Shop, tracengent_platform: PlatformRecorder
) -> None:
    deciding_threads: list[int] = []

    class ThreadLog(Observer):
        def decision(self, *args: Any) -> None:
            deciding_threads.append(threading.get_ident())

    with TracengentClient(TracengentOptions.local()) as client:
        client._core.observer = ThreadLog()
        async with connected(shop) as raw:
            session = governed_session(client, raw)
            with client.begin_trace("sync client") as trace:
                await session.call_tool("charge_card", {"amount": 50, "card": CARD})
                with pytest.raises(ToolDeniedException):
                    await session.call_tool("delete_customer", {"customer_id": "c1"})
        assert client.flush(5)

    assert len(deciding_threads) == 2
    assert threading.get_ident() not in deciding_threads  # the loop's thread never blocked
    assert shop.received == [("charge_card", {"amount": 50.0, "currency": "EUR"})]
    events = tracengent_platform.events(trace.trace_id, type="tool_call")
    assert [(e["name"], e["status"]) for e in events] == [
        ("charge_card", "success"),
        ("delete_customer", "failure"),
    ]
    assert events[0]["input"] == {"amount": 50}
    assert len(tracengent_platform.decisions(trace.trace_id)) == 2
    calls = tracengent_platform.tool_calls(trace.trace_id)
    assert [(call.tool, call.verdict) for call in calls] == [
        ("charge_card", "allowed"),
        ("delete_customer", "denied"),
    ]


# --- steps, pass-through, packaging -------------------------------------------------------------


class StepLog(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def step_started(self, trace: AmbientTrace, kind: str, name: str) -> Any:
        self.calls.append(("started", kind, name))
        return name

    def decision(self, kind: str, subject: str, decision: Decision) -> None:
        self.calls.append(("decision", subject, decision.status))

    def step_finished(
        self, step: Any, event: AgentEvent | None, error: BaseException | None
    ) -> None:
        self.calls.append(("finished", step, event.status if event else "-", type(error).__name__))


async def test_an_observer_sees_the_decision_inside_the_step(
    shop: Shop, client: AsyncTracengentClient
) -> None:
    log = StepLog()
    client._core.observer = log
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        async with client.begin_trace("observed"):
            await session.call_tool("lookup_customer", {"customer_id": "c1"})
            with pytest.raises(ToolDeniedException):
                await session.call_tool("wipe_disk")

    assert log.calls == [
        ("started", "tool_call", "lookup_customer"),
        ("decision", "lookup_customer", "allowed"),
        ("finished", "lookup_customer", "success", "NoneType"),
        ("started", "tool_call", "wipe_disk"),
        ("decision", "wipe_disk", "denied"),
        ("finished", "wipe_disk", "failure", "ToolDeniedException"),
    ]


async def test_everything_else_passes_through_to_the_session(
    shop: Shop, client: AsyncTracengentClient
) -> None:
    async with connected(shop) as raw:
        session = governed_session(client, raw)
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} >= {"charge_card", "wipe_disk"}
        assert type(await session.send_ping()) is type(await raw.send_ping())
        assert session.server_info == raw.server_info and session.wrapped is raw
    assert shop.received == []


async def test_async_with_enters_the_wrapped_client_and_yields_the_wrapper(
    shop: Shop, client: AsyncTracengentClient
) -> None:
    with anyio.fail_after(10):
        async with governed_session(client, Client(shop.server, mode="legacy")) as session:
            assert isinstance(session, GovernedSession)
            assert "lookup_customer" in {t.name for t in (await session.list_tools()).tools}
            await session.call_tool("lookup_customer", {"customer_id": "c9"})
            with pytest.raises(ToolDeniedException):
                await session.call_tool("delete_customer", {"customer_id": "c9"})
    assert shop.received == [("lookup_customer", {"customer_id": "c9"})]


def test_the_core_never_imports_mcp_and_a_missing_mcp_names_the_extra() -> None:
    core = (
        "import sys, tracengent\n"
        "tracengent.AsyncTracengentClient, tracengent.TracengentClient, tracengent.ToolGate\n"
        "assert 'mcp' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", core], check=True, timeout=60)
    missing = "import sys; sys.modules['mcp'] = None\nimport tracengent.integrations.mcp\n"
    done = subprocess.run(
        [sys.executable, "-c", missing], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert (
        'ImportError: tracengent.integrations.mcp needs the MCP SDK: pip install "tracengent[mcp]"'
        in (done.stderr)
    )
