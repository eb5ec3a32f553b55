"""The pytest kit: fixtures through the real entry-point plugin, and the recorder's helpers.

Inner sessions (`pytester`) check what only a pytest run can show: markers, fixture overrides,
async plugins and modes, and the failure output a user reads. The rest uses the fixtures here,
in the outer session, where the installed plugin provides them too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracengent import (
    AgentEvent,
    LlmCallResult,
    Money,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    governed_client,
)
from tracengent.platform import PolicyError, open_platform, use_embedded_platform
from tracengent.testing import PlatformRecorder

pytest_plugins = ["pytester"]

# Inner sessions: no cache files, and no hypothesis plugin (it re-imports hypothesis each time).
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
LOOP_SCOPE = ("-o", "asyncio_default_fixture_loop_scope=function")

OPS_POLICY = """
    currency = "EUR"
    [[agents]]
    id = "ops-bot"
    client_id = "key_ops"
    client_secret = "sec_ops"
    permissions = ["files:read"]
    [[tools.mcp]]
    name = "read_file"
    permission = "files:read"
"""


def _llm(tokens: int, amount: float, currency: str = "EUR") -> LlmCallResult[str]:
    return LlmCallResult("ok", tokens=tokens, model="test-model", cost=Money(amount, currency))


# --- the plugin ----------------------------------------------------------------------------------


def test_the_plugin_is_registered_from_its_entry_point(request: pytest.FixtureRequest) -> None:
    plugin = request.config.pluginmanager.get_plugin("tracengent")
    assert plugin is not None and plugin.__name__ == "tracengent.testing._plugin"
    assert any(line.startswith("tracengent_policy(") for line in request.config.getini("markers"))


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    heavy = ["tracengent.platform", "tracengent._client", "httpx", "pydantic", "tracengent_api"]
    script = (
        f"import sys, tracengent.testing._plugin; print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"


def test_without_the_platform_extra_only_the_fixtures_fail(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys, pytest

        @pytest.fixture(autouse=True)
        def no_platform_extra(monkeypatch):
            monkeypatch.setitem(sys.modules, "tracengent.platform", None)
        """
    )
    pytester.makepyfile(
        """
        def test_unrelated():
            assert 1 + 1 == 2

        def test_uses_the_kit(tracengent_client):
            pass
        """
    )
    result = pytester.runpytest_inprocess(*QUIET, *LOOP_SCOPE)
    result.assert_outcomes(passed=1, errors=1)
    assert 'pip install "tracengent[testing]" (import of tracengent.platform' in result.stdout.str()
    assert "During handling" not in result.stdout.str()


# --- policies ------------------------------------------------------------------------------------


def test_policies_from_a_marker_a_file_and_a_fixture_override(pytester: pytest.Pytester) -> None:
    pytester.mkdir("policies").joinpath("files.toml").write_text(
        textwrap.dedent(OPS_POLICY).replace("ops-bot", "file-bot")
    )
    pytester.makepyfile(
        test_policies=f"""
        import pytest
        OPS_POLICY = {OPS_POLICY!r}

        def test_the_built_in_policy_by_default(tracengent_platform, tracengent_client):
            assert tracengent_client.options.agent_id == "demo-agent"
            assert not tracengent_client.tools.authorize_mcp("read_file").allowed
            tracengent_platform.assert_tool_denied("read_file")

        @pytest.mark.tracengent_policy(OPS_POLICY)
        def test_inline(tracengent_platform, tracengent_client):
            assert tracengent_client.options.agent_id == "ops-bot"
            assert tracengent_client.tools.authorize_mcp("read_file").allowed
            tracengent_platform.assert_tool_allowed("read_file")

        @pytest.mark.tracengent_policy(path="policies/files.toml")
        def test_from_a_file(tracengent_platform, tracengent_client):
            assert tracengent_client.options.agent_id == "file-bot"
            assert tracengent_client.authorize("files:read").allowed
            tracengent_platform.assert_authorized("files:read")

        @pytest.mark.tracengent_policy("currency = 'EUR'\\nagents = 3")
        def test_a_broken_policy(tracengent_platform):
            pass
        """
    )
    sub = pytester.mkpydir("shared")
    sub.joinpath("conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef tracengent_policy():\n"
        f'    return """{OPS_POLICY}""".replace("ops-bot", "conftest-bot")\n'
    )
    sub.joinpath("test_override.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_the_overridden_fixture(tracengent_client):
                assert tracengent_client.options.agent_id == "conftest-bot"

            @pytest.mark.tracengent_policy(path="../policies/files.toml")
            def test_a_marker_wins_over_the_fixture(tracengent_client):
                assert tracengent_client.options.agent_id == "file-bot"
            """
        )
    )
    result = pytester.runpytest_inprocess(*QUIET, *LOOP_SCOPE, "--strict-markers")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*tracengent_policy: <inline tracengent_policy>: the policy*"])


def test_a_recorder_reads_a_policy_from_text_a_path_or_a_policy(tmp_path: Path) -> None:
    (tmp_path / "ops.toml").write_text(textwrap.dedent(OPS_POLICY))
    with PlatformRecorder(Path("ops.toml"), base_dir=tmp_path) as recorder:
        assert recorder.options().agent_id == "ops-bot"
        policy = recorder.policy
    with PlatformRecorder(policy) as recorder:
        assert recorder.client().authorize("files:read").allowed
    with pytest.raises(TypeError, match="looks like a file name"):
        PlatformRecorder("ops.toml")
    with pytest.raises(PolicyError, match="not found"):
        PlatformRecorder(Path("missing.toml"), base_dir=tmp_path)


def test_options_sign_in_as_a_policy_agent(tracengent_platform: PlatformRecorder) -> None:
    assert tracengent_platform.options().client_id == "key_demo"
    hotel = tracengent_platform.options("agt_hotel")
    assert (hotel.agent_id, hotel.ingest_key, hotel.client_id) == ("agt_hotel", "agk_hotel", None)
    with pytest.raises(ValueError, match="no agent 'nobody' in the policy; it has: demo-agent"):
        tracengent_platform.options("nobody")
    with tracengent_platform.client("agt_hotel") as client:
        client.record(AgentEvent(name="from the hotel agent"))
    assert [e["agentId"] for e in tracengent_platform.events(name="from the hotel agent")] == [
        "agt_hotel"
    ]


# --- lifecycle and reading -----------------------------------------------------------------------


def test_the_recorder_installs_itself_and_restores_the_previous_platform() -> None:
    outer = open_platform(None, ":memory:")
    previous = use_embedded_platform(outer)
    try:
        with PlatformRecorder() as recorder:
            with TracengentClient(TracengentOptions.local()) as client:
                assert client.authorize("flights:book").allowed
            made = [recorder.client(), recorder.async_client()]
            assert [d.permission for d in recorder.decisions()] == ["flights:book"]
        assert outer.store.decisions() == []
        for closed in made:
            closed.record(AgentEvent(name="after the test"))
            assert closed.dropped_count == 1  # closed with the recorder
    finally:
        assert use_embedded_platform(previous) is outer
        outer.store.close()


def test_reads_see_what_was_recorded_without_a_flush(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    with tracengent_client.begin_trace("plan a trip") as trace:
        trace.step("look for flights")
        trace.track_tool_call("search_flights", lambda: ["TP123"])
    with TracengentClient(TracengentOptions.local()) as agents_own:  # the code under test's own
        agents_own.record(AgentEvent(name="from the agent's own client"))
        # Dispatchers send every 2 s: only the reads' flush makes these visible already.
        assert len(tracengent_platform.events(name="from the agent's own client")) == 1
        events = tracengent_platform.events(trace.trace_id)
    assert [(e["type"], e["name"]) for e in events] == [
        ("decision", "look for flights"),
        ("tool_call", "search_flights"),
    ]
    assert [e["name"] for e in tracengent_platform.events(type="tool_call")] == ["search_flights"]
    [summary] = tracengent_platform.traces()
    assert (summary.trace_id, summary.status, summary.event_count) == (
        trace.trace_id,
        "completed",
        2,
    )
    assert re.search(
        r"\+\d\.\d{3}s  tool +✓ search_flights", tracengent_platform.timeline(trace.trace_id)
    )
    assert tracengent_platform.timeline() == tracengent_platform.timeline(trace.trace_id)


# --- assertions ----------------------------------------------------------------------------------


def test_tool_assertions(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    tools = tracengent_client.tools
    with tracengent_client.begin_trace("book and pay") as trace:
        assert tools.guard_mcp("search_flights", {"to": "LIS"}, lambda args: ["TP123"])
        with pytest.raises(ToolDeniedException):
            tools.guard_function("transfer_funds", {"amount": 9000}, lambda args: None)
        with pytest.raises(ToolDeniedException):
            tools.guard_mcp("delete_everything", {}, lambda args: None)
    with governed_client(tracengent_client) as http:
        with pytest.raises(ToolDeniedException):  # over maxAmount: never sent
            http.post("https://api.stripe.com/v1/refunds", json={"amount": 5000})
        with pytest.raises(ToolDeniedException):  # not on the egress allowlist: never sent
            http.get("https://exfiltrate.invalid/")
    platform = tracengent_platform
    [call] = platform.assert_tool_allowed("search_flights", trace.trace_id)
    assert (call.transport, call.decision.permission, call.verdict) == (
        "mcp",
        "flights:search",
        "allowed",
    )
    platform.assert_tool_denied("transfer_funds", trace.trace_id)
    platform.assert_tool_denied("delete_everything")
    platform.assert_tool_denied("api.stripe.com")
    platform.assert_tool_denied("POST api.stripe.com/v1/refunds")
    platform.assert_tool_denied("exfiltrate.invalid")

    with pytest.raises(AssertionError) as failed:
        platform.assert_tool_denied("search_flights", trace.trace_id)
    message = str(failed.value)
    assert f"expected: tool 'search_flights' gated and denied in trace {trace.trace_id}" in message
    assert "found:    1 of 1 gated call of 'search_flights' not denied:" in message
    assert "search_flights (flights:search)  allowed  'ok'" in message
    assert f"timeline:\n    trace {trace.trace_id}" in message
    assert "tool-authz  transfer_funds (payments:transfer)  9000 EUR  → denied" in message

    with pytest.raises(AssertionError, match=r"no gated call of 'book_flight'; gated were: .*"):
        platform.assert_tool_allowed("book_flight")


def test_permission_assertions_and_approvals(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    platform, client = tracengent_platform, tracengent_client
    assert client.authorize("flights:book").allowed
    platform.assert_authorized("flights:book")
    with pytest.raises(AssertionError, match="1 of 1 decision on 'flights:book' not denied"):
        platform.assert_denied("flights:book")
    with pytest.raises(AssertionError, match="exactly one pending approval, found 0"):
        platform.approve()

    refund = client.authorize("payments:refund", {"amount": 400})
    assert refund.pending and refund.approval_id
    with pytest.raises(AssertionError, match="pending_approval  'amount 400 EUR is over 300"):
        platform.assert_authorized("payments:refund")
    approval = platform.approve()
    assert (approval.approval_id, approval.status) == (refund.approval_id, "approved")
    assert client.wait_for_approval("payments:refund", refund.approval_id, timeout=5).allowed
    platform.assert_authorized("payments:refund")

    charge = client.authorize("payments:charge", {"amount": 3000})
    assert charge.approval_id is not None
    assert platform.deny(charge.approval_id).status == "denied"
    platform.assert_denied("payments:charge")
    with pytest.raises(AssertionError, match="approval apr_1 is approved, not pending"):
        platform.deny(refund.approval_id)
    with pytest.raises(AssertionError, match="cannot approve 'apr_404': no such approval"):
        platform.approve("apr_404")
    assert [a.status for a in platform.approvals()] == ["approved", "denied"]
    with pytest.raises(AssertionError, match="no decision on 'payments:typo'; the decisions"):
        platform.assert_denied("payments:typo")


def test_within_budget(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    with tracengent_client.begin_trace("summarise") as trace:
        trace.track_llm_call("draft", lambda: _llm(120, 0.02, "USD"), estimated_tokens=500)
        trace.track_llm_call("polish", lambda: _llm(80, 0.01))
        trace.track_action("send", lambda: None, cost=Money(0.005, "EUR"))
    platform = tracengent_platform
    # 0.02 USD is 0.0184 EUR at the policy's rate: 0.0334 EUR in all
    platform.assert_within_budget(trace.trace_id, max_tokens=200, max_cost=0.0334)
    with pytest.raises(AssertionError) as failed:
        platform.assert_within_budget(trace.trace_id, max_tokens=199)
    message = str(failed.value)
    assert f"expected: trace {trace.trace_id} within budget: at most 199 tokens" in message
    assert "found:    200 tokens in 2 LLM calls, costs 0.0334 EUR:" in message
    assert "llm_call  'draft'  success  120 tokens  0.02 USD = 0.0184 EUR" in message
    assert re.search(r"\+\d\.\d{3}s  llm +✓ draft  120 tokens", message)  # the timeline
    with pytest.raises(AssertionError, match=r"at most 0\.033 EUR"):
        platform.assert_within_budget(trace.trace_id, max_cost=0.033)
    with pytest.raises(TypeError, match="needs max_tokens, max_cost or both"):
        platform.assert_within_budget(trace.trace_id)
    with pytest.raises(AssertionError, match="found:    no such trace"):
        platform.assert_within_budget("trc_unknown", max_tokens=1)


def test_a_cost_in_a_currency_without_a_rate_fails_the_cost_budget(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    with tracengent_client.begin_trace("pay in yen") as trace:
        trace.track_llm_call("draft", lambda: _llm(10, 5, "JPY"))
    tracengent_platform.assert_within_budget(trace.trace_id, max_tokens=10)
    with pytest.raises(AssertionError, match="not convertible to EUR: 5 JPY"):
        tracengent_platform.assert_within_budget(trace.trace_id, max_cost=100)


def test_assert_event(
    tracengent_platform: PlatformRecorder, tracengent_client: TracengentClient
) -> None:
    with tracengent_client.begin_trace("fetch") as trace:
        with pytest.raises(OSError):
            trace.track_tool_call("fetch_page", lambda: (_ for _ in ()).throw(OSError("down")))
    [event] = tracengent_platform.assert_event(
        trace.trace_id, type="tool_call", name="fetch_page", status="failure"
    )
    assert event["output"] == {"error": "down"}
    with pytest.raises(AssertionError) as failed:
        tracengent_platform.assert_event(trace.trace_id, type="tool_call", status="success")
    message = str(failed.value)
    assert "expected: an event (type='tool_call', status='success')" in message
    assert "found:    none of its 1 event matches:\n    tool_call  'fetch_page'  failure" in message
    assert re.search(r"\+\d\.\d{3}s  tool +✗ fetch_page  error: down", message)


# --- inner sessions: failure output, approvals, async clients ------------------------------------


def test_failures_show_the_timeline_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from tracengent import LlmCallResult, Money

        def search(client):
            return client.tools.guard_mcp("search_flights", {"to": "LIS"}, lambda a: ["TP123"])

        def test_denied_but_allowed(tracengent_platform, tracengent_client):
            with tracengent_client.begin_trace("find flights") as trace:
                trace.track_tool_call("search_flights", lambda: search(tracengent_client))
            tracengent_platform.assert_tool_denied("search_flights", trace.trace_id)

        def llm_trace(client):
            with client.begin_trace("answer") as trace:
                result = LlmCallResult("hi", tokens=120, cost=Money(0.01, "EUR"))
                trace.track_llm_call("answer", lambda: result)
            return trace.trace_id

        def test_within_budget(tracengent_platform, tracengent_client):
            trace_id = llm_trace(tracengent_client)
            tracengent_platform.assert_within_budget(trace_id, max_tokens=120, max_cost=0.01)

        def test_over_budget(tracengent_platform, tracengent_client):
            trace_id = llm_trace(tracengent_client)
            tracengent_platform.assert_within_budget(trace_id, max_tokens=100)

        def test_approval(tracengent_platform, tracengent_client):
            decision = tracengent_client.authorize("payments:refund", {"amount": 400})
            assert decision.pending
            tracengent_platform.approve(decision.approval_id)
            approved = tracengent_client.wait_for_approval(
                "payments:refund", decision.approval_id, timeout=5
            )
            assert approved.allowed
            tracengent_platform.assert_authorized("payments:refund")
        """
    )
    result = pytester.runpytest_inprocess(*QUIET, *LOOP_SCOPE)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*tracengent_platform.assert_tool_denied(*",  # the test's own line, not the kit's
            "E   *expected: tool 'search_flights' gated and denied in trace trc_*",
            "E   *found:    1 of 1 gated call of 'search_flights' not denied:",
            "E   *timeline:",
            'E   *trace trc_*  agent demo-agent  root "find flights"*',
            "E   *tool-authz  search_flights (flights:search)  → allowed [[]policy_allow]*",
            "E   *tool *✓ search_flights*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E   *within budget: at most 100 tokens",
            "E   *found:    120 tokens in 1 LLM call, costs 0.01 EUR:",
            "E   *llm *✓ answer  120 tokens*",
        ]
    )
    result.stdout.no_fnmatch_line("*tracengent/testing/_checks.py*")


ASYNC_TEST = """
import pytest

clients = []

{marker}
async def test_the_async_client(tracengent_platform, async_tracengent_client):
    client = async_tracengent_client
    async with client.begin_trace("look up") as trace:
        await trace.track_tool_call("lookup", lambda: 42)
        assert (await client.tools.authorize_mcp("search_flights")).allowed
    tracengent_platform.assert_event(trace.trace_id, type="tool_call", name="lookup")
    tracengent_platform.assert_tool_allowed("search_flights", trace.trace_id)
    clients.append(client)

def test_it_was_closed_after_the_test():
    from tracengent import AgentEvent
    [client] = clients
    client.record(AgentEvent(name="late"))
    assert client.dropped_count == 1
"""


@pytest.mark.parametrize(
    ("args", "marker", "extra"),
    [
        (["-o", "asyncio_mode=auto", *LOOP_SCOPE], "", ""),
        (["-o", "asyncio_mode=strict", *LOOP_SCOPE], "@pytest.mark.asyncio", ""),
        (
            ["-p", "no:asyncio"],  # anyio's plugin alone, no pytest-asyncio at all
            "@pytest.mark.anyio",
            "\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n",
        ),
    ],
    ids=["pytest-asyncio-auto", "pytest-asyncio-strict", "anyio"],
)
def test_the_async_client_fixture_under_each_async_plugin(
    pytester: pytest.Pytester, args: list[str], marker: str, extra: str
) -> None:
    pytester.makepyfile(ASYNC_TEST.format(marker=marker) + extra)
    result = pytester.runpytest_inprocess(*QUIET, *args)
    result.assert_outcomes(passed=2)


def test_an_async_client_outside_any_plugin(tracengent_platform: PlatformRecorder) -> None:
    import asyncio

    client = tracengent_platform.async_client()

    async def run() -> bool:
        return (await client.authorize("hotels:book")).allowed

    assert asyncio.run(run())
    tracengent_platform.assert_authorized("hotels:book")
