"""The `tracengent` CLI, driven in-process through `main([...])` against a real data dir.

State is produced the way users produce it: the SDK talks to the platform (embedded, over the
same data dir the CLI reads), and the CLI, a separate store connection like a second process,
reads and changes it. `dev` is started as a real subprocess and reached over HTTP.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tracengent import LlmCallResult, Money, TracengentClient, TracengentOptions
from tracengent.cli import main
from tracengent.platform import EmbeddedTransport, Platform, Store, open_platform
from tracengent.platform._store import DecisionRecord
from tracengent.platform._timeline import render_timeline

ROOT = Path(__file__).resolve().parent.parent
TRACEBACK = "Traceback"


def client_for(platform: Platform, **overrides: Any) -> TracengentClient:
    options = TracengentOptions(
        agent_id="demo-agent",
        base_url="http://platform.test",
        client_id="key_demo",
        client_secret="ags_demo",
        approval_poll_interval_s=0.02,
        approval_timeout_s=10,
        flush_interval_ms=50,
        **overrides,
    )
    return TracengentClient(options, transport=EmbeddedTransport(platform))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    """The CLI's promise for an expected failure: one line, prefixed, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tracengent: error: "), err
    assert TRACEBACK not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- a trace recorded through the SDK ----------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    data: Path
    trace_id: str
    approval_id: str
    approve_exit: int


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """One trace with every kind of entry; its refund waits for a CLI `approve` from a thread."""
    data = tmp_path_factory.mktemp("recorded")
    platform = open_platform(None, data)
    approved: list[tuple[str, int]] = []

    def approver() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = platform.store.approvals("pending")
            if pending:
                apr_id = pending[0].approval_id
                approved.append((apr_id, main(["approve", apr_id, "--data", str(data)])))
                return
            time.sleep(0.01)

    thread = threading.Thread(target=approver)
    thread.start()
    client = client_for(platform)
    try:
        with client.begin_trace("Refund order 42", actor_user_id="alice") as trace:
            trace.step("Look up order 42")
            trace.track_tool_call("lookup_order", lambda: {"order": 42}, input={"id": 42})
            with pytest.raises(ConnectionError):
                trace.track_tool_call("notify_customer", _unreachable)
            trace.track_llm_call(
                "summarize",
                lambda: LlmCallResult("a refund is due", tokens=321, model="gpt-test"),
                estimated_tokens=500,
            )
            client.ensure_authorized("payments:refund", {"amount": 400, "currency": "EUR"})
            trace.track_action("refund", lambda: "done", cost=Money.eur(400))
            trace.complete("completed", "refunded 400 EUR")
    finally:
        thread.join(timeout=15)
        client.close()
    try:
        assert len(approved) == 1, "the approver never saw a pending approval"
        yield Recorded(data, trace.trace_id, approved[0][0], approved[0][1])
    finally:
        platform.store.close()


def _unreachable() -> None:
    raise ConnectionError("smtp.example.com refused the connection")


def test_approve_from_another_thread_unblocks_the_agent(recorded: Recorded) -> None:
    # The fixture only got past ensure_authorized because the CLI's approval reached the agent.
    assert recorded.approve_exit == 0
    assert re.fullmatch(r"apr_\d+", recorded.approval_id)


def test_traces_lists_the_trace(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "traces", "--data", str(recorded.data))
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "TRACE", "STARTED", "DURATION", "STATUS", "AGENT", "EVENTS", "DECISIONS", "ROOT",
    ]  # fmt: skip
    [row] = [r for r in rows if recorded.trace_id in r]
    assert "completed" in row and "demo-agent" in row and '"Refund order 42"' in row
    # 5 events (step, 2 tool calls, LLM call, action), 2 decisions (llm:call, the refund)
    assert re.search(r"\s5\s+2\s", row), row
    assert row.index("completed") == header.index("STATUS")  # columns line up


def test_trace_shows_a_readable_timeline(
    recorded: Recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "trace", recorded.trace_id, "--data", str(recorded.data))
    assert (code, err) == (0, "")
    header, *lines = out.rstrip("\n").splitlines()

    assert header.startswith(f"trace {recorded.trace_id}  agent demo-agent")
    assert 'root "Refund order 42"' in header
    assert re.search(r"duration \d+\.\d{3}s  status completed$", header), header

    def line(pattern: str) -> str:
        """The one entry line whose label and body match `pattern` (after the time column)."""
        found = [text for text in lines if re.search(r"^\+\d+\.\d{3}s  " + pattern, text)]
        assert len(found) == 1, f"{pattern!r} in:\n{out}"
        return found[0]

    assert line(r"step\s+Look up order 42$")
    assert re.search(r"✓ lookup_order  \d+ ms$", line(r"tool\s+✓ lookup_order"))
    failed = line(r"tool\s+✗ notify_customer")
    assert "error: smtp.example.com refused the connection" in failed
    llm = line(r"llm\s+✓ summarize")
    assert "321 tokens" in llm and "model gpt-test" in llm
    assert "est. 500 tokens  → allowed" in line(r"authz\s+llm:call")
    refund = line(r"authz\s+payments:refund")
    assert "400 EUR  → pending_approval" in refund
    assert '"amount 400 EUR is over 300: a person must approve"' in refund
    assert re.search(rf"dec_\d+  approval {recorded.approval_id}$", refund)
    approval = line(r"approval\s+apr_")
    assert f"{recorded.approval_id}  approved  payments:refund  400 EUR  decided at +" in approval
    assert re.search(r"✓ refund  400 EUR  \d+ ms$", line(r"action\s+"))
    assert line(r'close\s+completed  "refunded 400 EUR"$')
    assert len(lines) == 9  # nothing else, nothing twice

    # Times are relative to the first entry, in order, and the columns line up.
    times = [float(text.split("s", 1)[0]) for text in lines]
    assert lines[0].startswith("+0.000s") and times == sorted(times)
    label_columns = {len(text) - len(text.split(None, 1)[1]) for text in lines}
    assert len(label_columns) == 1, out
    bodies = {len(text) - len(text.split(None, 2)[2]) for text in lines}
    assert len(bodies) == 1, out


def test_unknown_trace_is_one_error_line(
    recorded: Recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "trace", "trc_nope", "--data", str(recorded.data))
    assert (code, out) == (1, "")
    assert_one_error_line(err, "no trace trc_nope")


# --- the timeline renderer on odd input ----------------------------------------------------------

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, timezone.utc).isoformat()


def test_render_timeline_survives_missing_and_unknown_fields() -> None:
    store = Store(clock=lambda: T0 + 3.5)
    trace = "trc_odd"
    store.add_events(
        "other-sdk",
        [
            {"eventId": "e0", "traceId": trace, "occurredAt": _at(0)},
            {
                "eventId": "e1", "traceId": trace, "occurredAt": _at(1), "type": "handoff",
                "name": "to billing\nagent", "status": "success", "durationMs": 7,
            },
            {
                "eventId": "e2", "traceId": trace, "occurredAt": _at(2), "type": "tool_call",
                "name": "charge", "status": "failure", "output": {"error": "card declined"},
            },
            {
                "eventId": "e3", "traceId": trace, "occurredAt": _at(3), "type": "llm_call",
                "usage": {"tokens": "many"}, "cost": {"amount": "free"}, "durationMs": "slow",
            },
            {"eventId": "e4", "traceId": trace, "occurredAt": _at(4), "type": "action",
             "name": "pay", "cost": {"amount": 12.5}, "usage": None},
            {"eventId": "e5", "traceId": trace, "occurredAt": _at(4.5), "type": "error",
             "name": "boom", "status": "failure", "output": "stack overflow"},
        ],
    )  # fmt: skip
    store.add_decision(
        DecisionRecord(
            decision_id="dec_x", kind="tool", agent_id="other-sdk", trace_id=trace,
            permission=None, status="denied", outcome="egress_deny", reason="", context=None,
            approval_id=None, acting_for="bob", chain=None, created_at=T0 + 2.5,
        )
    )  # fmt: skip
    store.create_approval("apr_x", "dec_x", "other-sdk", "x:y", "not a mapping", trace, 60)
    store.add_trace_close("other-sdk", {"traceId": trace, "occurredAt": _at(5)})

    text = render_timeline(store, trace)
    header, *lines = text.splitlines()
    assert header == "trace trc_odd  agent other-sdk  root -  duration 5.000s  status closed"
    assert [" ".join(line.split()) for line in lines] == [
        "+0.000s event (unnamed)",
        "+1.000s handoff to billing agent success 7 ms",
        "+2.000s tool ✗ charge error: card declined",
        "+2.500s tool-authz (no permission) → denied [egress_deny] for bob dec_x",
        "+3.000s llm ✓ (unnamed)",
        "+3.500s approval apr_x pending x:y expires at +63.500s",
        "+4.000s action ✓ pay 12.5",
        "+4.500s error boom failure error: stack overflow",
        "+5.000s close ?",
    ]
    with pytest.raises(KeyError):
        render_timeline(store, "trc_unknown")
    store.close()


# --- approvals -----------------------------------------------------------------------------------


def test_approvals_approve_and_deny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    platform = open_platform(None, tmp_path)
    data = str(tmp_path)
    client = client_for(platform)
    try:
        first = client.authorize("payments:refund", {"amount": 400, "currency": "EUR"})
        second = client.authorize("payments:refund", {"amount": 350})
        assert first.pending and second.pending
        assert first.approval_id and second.approval_id

        code, out, err = run(capsys, "approvals", "--data", data)
        assert (code, err) == (0, "")
        assert out.splitlines()[0].split() == [
            "APPROVAL", "STATUS", "AGENT", "PERMISSION", "AMOUNT", "TRACE", "CREATED", "EXPIRES",
        ]  # fmt: skip
        rows = out.splitlines()[1:]
        assert [row.split()[:2] for row in rows] == [
            [first.approval_id, "pending"],
            [second.approval_id, "pending"],
        ]
        assert "payments:refund  400 EUR" in rows[0] and "  350  " in rows[1]

        code, out, err = run(capsys, "approve", first.approval_id, "--data", data)
        assert (code, err) == (0, "")
        assert out == f"approved {first.approval_id}: payments:refund 400 EUR (agent demo-agent)\n"
        code, out, err = run(capsys, "deny", second.approval_id, "--data", data)
        assert (code, err) == (0, "")
        assert out.startswith(f"denied {second.approval_id}: payments:refund 350 ")

        # The agent sees what the CLI decided.
        assert client.wait_for_approval("payments:refund", first.approval_id).allowed
        refused = client.wait_for_approval("payments:refund", second.approval_id)
        assert not refused.allowed and "denied by a reviewer" in refused.reason

        assert run(capsys, "approvals", "--data", data) == (0, "no pending approvals\n", "")
        code, out, _ = run(capsys, "approvals", "--all", "--data", data)
        assert [row.split()[:2] for row in out.splitlines()[1:]] == [
            [first.approval_id, "approved"],
            [second.approval_id, "denied"],
        ]

        code, out, err = run(capsys, "deny", first.approval_id, "--data", data)
        assert (code, out) == (1, "")
        assert_one_error_line(err, f"approval {first.approval_id} is approved, not pending")
        code, out, err = run(capsys, "approve", "apr_404", "--data", data)
        assert (code, out) == (1, "")
        assert_one_error_line(err, "no approval apr_404")
    finally:
        client.close()
        platform.store.close()


# --- grants ------------------------------------------------------------------------------------


def _authorize(platform: Platform, token: str, amount: float) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"permission": "payments:refund", "context": {"amount": amount}})
    reply = platform.handle(
        "POST",
        "/v1/authorize",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body.encode(),
    )
    return reply.status, json.loads(reply.body)


def test_grant_prints_a_token_and_revoke_kills_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path)
    code, out, err = run(
        capsys, "grant", "demo-agent", "payments:refund", "hotels:*", "--max-amount", "100",
        "--ttl", "120", "--acting-for", "alice", "--data", data,
    )  # fmt: skip
    assert code == 0
    token = out.strip()
    assert out == token + "\n"  # stdout is the token alone: TOKEN=$(tracengent grant …)
    claims = jwt.decode(token, options={"verify_signature": False})
    grant_id = claims["grant_id"]
    assert claims["sub"] == "demo-agent"
    assert claims["acting_for"] == "alice"
    assert claims["delegated_permissions"] == ["payments:refund", "hotels:*"]
    assert claims["max_amount"] == 100
    assert claims["exp"] - claims["iat"] == 120
    assert err.splitlines() == [
        f"grant {grant_id}: demo-agent acting for alice, payments:refund hotels:*, max amount 100,"
        f" expires in 120s (revoke with: tracengent revoke {grant_id})"
    ]

    # The token works against a platform over the same data dir, within the grant's bounds.
    platform = open_platform(None, tmp_path)
    try:
        status, answer = _authorize(platform, token, 50)
        assert (status, answer["allowed"], answer["actingFor"]) == (200, True, "alice")
        status, answer = _authorize(platform, token, 150)
        assert (status, answer["allowed"]) == (200, False)
        assert "maxAmount 100" in answer["reason"]

        code, out, err = run(capsys, "revoke", grant_id, "--data", data)
        assert (code, out, err) == (0, f"revoked {grant_id}\n", "")
        status, answer = _authorize(platform, token, 50)
        assert status == 401
        assert "revoked" in answer["reason"]
    finally:
        platform.store.close()

    code, out, err = run(capsys, "revoke", "dlg_404", "--data", data)
    assert (code, out) == (1, "")
    assert_one_error_line(err, "no grant dlg_404")


def test_grant_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "grant", "demo-agent", "flights:book", "--data", str(tmp_path))
    assert code == 0
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert "max_amount" not in claims
    assert claims["acting_for"]  # the login name, or "local-user" without one
    assert "expires in 3600s" in err


def test_grant_warns_about_a_permission_the_agent_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "grant", "agt_hotel", "payments:refund", "--data", str(tmp_path))
    assert code == 0 and out.count(".") == 2  # still a token: the grant is harmless, not wrong
    assert "warning: the policy does not grant 'payments:refund' to agt_hotel" in err


def test_grant_unknown_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "grant", "ghost", "payments:refund", "--data", str(tmp_path))
    assert (code, out) == (1, "")
    assert_one_error_line(err, "unknown agent 'ghost'")


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("currency = \n", "TOML syntax error at line 1"),
        ('currency = "EUR"\nbogus = 1\n', "bogus"),
    ],
)
def test_grant_with_a_bad_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, problem: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    code, out, err = run(
        capsys, "grant", "demo-agent", "x:y", "--policy", str(path), "--data", str(tmp_path)
    )
    assert (code, out) == (1, "")
    assert_one_error_line(err, str(path), problem)


def test_grant_with_a_missing_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    code, _, err = run(capsys, "grant", "demo-agent", "x:y", "--policy", str(missing))
    assert code == 1
    assert_one_error_line(err, str(missing), "not found")


@pytest.mark.parametrize(
    "argv",
    [
        ["grant", "demo-agent", "x:y", "--ttl", "0"],
        ["grant", "demo-agent", "x:y", "--max-amount", "-5"],
        ["grant", "demo-agent", "x:y", "--max-amount", "lots"],
        ["grant", "demo-agent"],
        ["traces", "--last", "0"],
        ["dev", "--port", "70000"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "usage: tracengent" in err and "error:" in err and TRACEBACK not in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("dev", "traces", "trace", "approvals", "approve", "deny", "grant", "revoke"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), command
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("tracengent ")


# --- reading state -----------------------------------------------------------------------------


def test_state_commands_need_an_existing_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo"
    for argv in (["traces"], ["trace", "trc_1"], ["approvals"], ["approve", "apr_1"],
                 ["revoke", "dlg_1"]):  # fmt: skip
        code, out, err = run(capsys, *argv, "--data", str(missing))
        assert (code, out) == (1, ""), argv
        assert_one_error_line(err, f"no platform data in {missing}")
    assert not missing.exists()  # a typo must not create an empty store


def test_default_data_dir_is_tracengent_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACENGENT_DATA", str(tmp_path))
    assert run(capsys, "traces") == (0, "no traces\n", "")
    assert (tmp_path / "platform.sqlite3").exists()


def test_an_unexpected_failure_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Store, last: int = 20) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.delenv("TRACENGENT_DEBUG", raising=False)
    monkeypatch.setattr(Store, "traces", broken)
    code, out, err = run(capsys, "traces", "--data", str(tmp_path))
    assert (code, out) == (1, "")
    assert_one_error_line(err, "unexpected RuntimeError: disk on fire")


# --- serving -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dev_serves_the_platform_over_http(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracengent.cli",
            "dev",
            "--port",
            str(port),
            "--data",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/.well-known/jwks.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "tracengent dev did not answer within 10 s"
            time.sleep(0.05)
        # Any SDK can use it: this one authorizes over HTTP, and the CLI sees the decision.
        options = TracengentOptions(
            agent_id="demo-agent", base_url=url, client_id="key_demo", client_secret="ags_demo"
        )
        with TracengentClient(options) as client:
            assert client.authorize("flights:book").allowed
            assert client.authorize("payments:refund", {"amount": 999}).pending
        store = Store.in_data_dir(tmp_path)
        try:
            assert [a.permission for a in store.approvals("pending")] == ["payments:refund"]
        finally:
            store.close()
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    first = out.splitlines()[0]
    assert first.startswith(f"Tracengent platform on {url} ")
    assert first.endswith(f"point an SDK at it: TRACENGENT_URL={url}")
    assert TRACEBACK not in err


def test_dev_on_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "dev", "--port", str(port), "--data", str(tmp_path))
    assert (code, out) == (1, "")
    assert_one_error_line(err, f"cannot listen on 127.0.0.1:{port}")


def test_console_script_is_registered() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"tracengent": "tracengent.cli:main"}
