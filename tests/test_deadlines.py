"""A deadline is a deadline: `authorize_timeout_s` bounds the whole exchange, however the
platform dribbles its answer (issue 11, principle 5).

httpx's timeouts bound each socket operation, so a platform that sends one byte every 0.2 s
kept a 1 s `authorize()` waiting for as long as it liked (15 s for the answers here; an answer
that dribbled only its body was even taken as an allow, late). Each test runs one governance
call against a raw-socket server on 127.0.0.1 that dribbles the whole answer, dribbles its
body, or never answers, and asserts the call fails closed (a deny, or the exception its API
promises) saying it timed out, within the deadline plus a margin that is generous for a loaded
2-core machine: these bounds tell 1 s from 15 s, they are not performance assertions. The
servers stop by themselves (`lifetime`), so a regression fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from tests._loopback import (
    SILENT,
    TOKEN,
    LoopbackServer,
    Reply,
    answer,
    dribbled,
    dribbled_body,
)
from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    DelegationException,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    async_governed_client,
    governed_client,
)
from tracengent._deadline import is_bounded

DEADLINE_S = 1.0
MARGIN_S = 1.5  # a loaded CI machine; what fails is 15 s
LIFETIME_S = 8.0  # a server outlives any correct test and ends any broken one

ALLOW = {"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_1"}
PENDING = {
    "allowed": False,
    "status": "pending_approval",
    "reason": "needs a person",
    "decisionId": "dec_1",
    "approvalId": "apr_1",
}
TOOL_ALLOW = {"allowed": True, "status": "allowed", "outcome": "policy_allow", "reason": "ok"}
CHILD = {"token": {"accessToken": "eyJ.child.token", "tokenType": "Bearer", "expiresIn": 300}}
DELEGATED = jwt.encode(
    {"grant_id": "dlg_1", "delegated_permissions": ["flights:*"]}, "k" * 32, algorithm="HS256"
)

#: How the platform misbehaves: each makes the answer arrive long after the deadline.
SLOW: dict[str, Callable[[int, dict[str, object]], Reply]] = {
    "dribbles_everything": dribbled,
    "dribbles_the_body": dribbled_body,
    "never_answers": lambda _status, _body: SILENT,
}
CREDENTIALS = ["client_credentials", "ingest_key"]
MODES = ["sync", "async"]


def options(
    url: str, credentials: str = "client_credentials", **overrides: Any
) -> TracengentOptions:
    values: dict[str, Any] = {
        "agent_id": "demo-agent",
        "base_url": url,
        "authorize_timeout_s": DEADLINE_S,
        "request_timeout_s": DEADLINE_S,
        "approval_poll_interval_s": 0.1,
        "flush_interval_ms": 50,
        "max_retries": 0,
    }
    if credentials == "client_credentials":
        values.update(client_id="key_demo", client_secret="ags_demo")
    else:
        values.update(ingest_key="agk_demo")
    values.update(overrides)
    return TracengentOptions(**values)


def slow_at(path_prefix: str, reply: Reply, fast: dict[str, Reply] | None = None) -> LoopbackServer:
    """A platform whose token endpoint (and `fast` paths) answer at once, and `path_prefix` slowly."""
    quick = {"/v1/oauth/token": TOKEN, **(fast or {})}

    def route(path: str, _body: bytes) -> Reply:
        if path.startswith(path_prefix):
            return reply
        return quick.get(path, answer(404, {"error": "not_found"}))

    return LoopbackServer(route, lifetime=LIFETIME_S)


def timed(mode: str, opts: TracengentOptions, act: Callable[[Any], Any]) -> tuple[Any, float]:
    """Run `act(client)` on a fresh sync or async client: what came back (or was raised), and
    how long the call took (the client's construction and close not counted)."""

    async def run_async() -> tuple[Any, float]:
        client = AsyncTracengentClient(opts)
        started = time.monotonic()
        try:
            outcome = act(client)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as error:  # noqa: BLE001 - the caller asserts on it
            outcome = error
        took = time.monotonic() - started
        await client.close(0.5)
        return outcome, took

    if mode == "async":
        return asyncio.run(run_async())
    client = TracengentClient(opts)
    started = time.monotonic()
    try:
        outcome = act(client)
    except Exception as error:  # noqa: BLE001 - the caller asserts on it
        outcome = error
    took = time.monotonic() - started
    client.close(0.5)
    return outcome, took


def assert_timed_out(text: str, took: float, deadline: float = DEADLINE_S) -> None:
    """Ended by the deadline (plus the margin), and saying it timed out."""
    assert took <= deadline + MARGIN_S and "did not answer in time" in text, (
        f"took {took:.2f}s for a {deadline:g}s deadline: {text}"
    )


# --- authorize / ensure_authorized ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize("slow", sorted(SLOW))
def test_authorize_is_a_deny_by_its_deadline_however_the_answer_dribbles(
    mode: str, credentials: str, slow: str
) -> None:
    """The answer would be an allow: arriving late, it must not count as one."""
    with slow_at("/v1/authorize", SLOW[slow](200, ALLOW)) as platform:
        decision, took = timed(
            mode, options(platform.url, credentials), lambda c: c.authorize("flights:book")
        )
    assert decision.allowed is False and decision.status == "denied", decision
    assert_timed_out(decision.reason, took)


@pytest.mark.parametrize("mode", MODES)
def test_ensure_authorized_raises_by_its_deadline(mode: str) -> None:
    with slow_at("/v1/authorize", dribbled(200, ALLOW)) as platform:
        raised, took = timed(
            mode, options(platform.url), lambda c: c.ensure_authorized("flights:book")
        )
    assert isinstance(raised, NotAuthorizedException), raised
    assert_timed_out(str(raised), took)


# --- the token fetch counts against the deadline of the call that needed it ------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slow", sorted(SLOW))
def test_a_dribbled_token_answer_counts_against_the_authorize_deadline(
    mode: str, slow: str
) -> None:
    token = {"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 900}
    with slow_at(
        "/v1/oauth/token", SLOW[slow](200, token), {"/v1/authorize": answer(200, ALLOW)}
    ) as platform:
        decision, took = timed(mode, options(platform.url), lambda c: c.authorize("flights:book"))
        asked = platform.paths()
    assert decision.allowed is False, decision
    assert_timed_out(decision.reason, took)
    assert "/v1/authorize" not in asked  # no token, no question


@pytest.mark.parametrize("mode", MODES)
def test_has_permission_gives_up_on_a_dribbled_token_answer(mode: str) -> None:
    """has_permission fetches a token with no governance deadline: request_timeout_s bounds it."""
    token = {"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 900}
    with slow_at("/v1/oauth/token", dribbled(200, token)) as platform:
        allowed, took = timed(mode, options(platform.url), lambda c: c.has_permission("x:y"))
    assert allowed is False
    assert took <= DEADLINE_S + MARGIN_S, took


@pytest.mark.parametrize("mode", MODES)
def test_a_platform_behind_an_http_proxy_is_bounded_too(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxies from the environment are httpx's own mounts: their pools are bounded as well."""
    with slow_at("/v1/authorize", dribbled(200, ALLOW)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        opts = options("http://platform.example", "ingest_key")
        decision, took = timed(mode, opts, lambda c: c.authorize("flights:book"))
        asked = proxy.paths()
    assert asked == ["/v1/authorize"]  # it went through the proxy
    assert decision.allowed is False, decision
    assert_timed_out(decision.reason, took)


def test_both_clients_bound_their_own_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket-level bound is installed on httpx's private pools: an httpx upgrade that
    moves them must fail here, not silently bring back per-read timeouts."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    opts = options("http://127.0.0.1:9")
    sync = TracengentClient(opts)
    asynchronous = AsyncTracengentClient(opts)
    try:
        assert is_bounded(sync._core.connection.http)
        assert is_bounded(asynchronous._http)
        assert len(sync._core.connection.http._mounts) >= 1  # the proxy's pool was checked too
    finally:
        sync.close(0.1)
        asyncio.run(asynchronous.close(0.1))


# --- tool governance: client.tools and the egress gate -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slow", ["dribbles_everything", "dribbles_the_body"])
def test_a_governed_function_fails_closed_by_its_deadline(mode: str, slow: str) -> None:
    ran: list[object] = []
    with slow_at("/v1/tool-authorize", SLOW[slow](200, TOOL_ALLOW)) as platform:
        raised, took = timed(
            mode,
            options(platform.url),
            lambda c: c.tools.guard_function("refund", {"amount": 5}, ran.append),
        )
    assert isinstance(raised, ToolDeniedException), raised
    assert "fail-closed" in raised.reason
    assert_timed_out(raised.reason, took)
    assert ran == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fail_open", [False, True])
def test_the_egress_gate_fails_closed_by_its_deadline(mode: str, fail_open: bool) -> None:
    """A slow answer is an outage: fail-open lets the call through, but only at the deadline."""
    reached: list[httpx.Request] = []

    def tool(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200, json={"ok": True})

    def call(client: Any) -> Any:
        url, body = "https://api.stripe.com/v1/refunds", {"amount": 1}
        if isinstance(client, TracengentClient):
            return governed_client(client, inner=httpx.MockTransport(tool)).post(url, json=body)

        async def post() -> httpx.Response:
            async with async_governed_client(client, inner=httpx.MockTransport(tool)) as http:
                return await http.post(url, json=body)

        return post()

    with slow_at("/v1/tool-authorize", dribbled(200, TOOL_ALLOW)) as platform:
        opts = options(platform.url, tool_governance_fail_open=fail_open)
        outcome, took = timed(mode, opts, call)
    if fail_open:
        assert isinstance(outcome, httpx.Response) and len(reached) == 1, outcome
        assert took <= DEADLINE_S + MARGIN_S, took
    else:
        assert isinstance(outcome, ToolDeniedException), outcome
        assert_timed_out(outcome.reason, took)
        assert reached == []


# --- approvals: each poll, and the wait as a whole --------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_dribbled_poll_ends_the_wait_for_approval_by_its_timeout(mode: str) -> None:
    with slow_at("/v1/approvals/", dribbled(200, {"status": "approved"})) as platform:
        decision, took = timed(
            mode,
            options(platform.url, authorize_timeout_s=5.0),
            lambda c: c.wait_for_approval("payments:refund", "apr_1", timeout=1.0),
        )
    assert decision.allowed is False and "timed out" in decision.reason, decision
    assert took <= 1.0 + MARGIN_S, took


@pytest.mark.parametrize("mode", MODES)
def test_each_poll_ends_by_its_deadline_and_the_next_one_is_asked(mode: str) -> None:
    """The first poll dribbles, the second answers: approved, one deadline after the ask."""
    polls: list[str] = []

    def route(path: str, _body: bytes) -> Reply:
        if path == "/v1/oauth/token":
            return TOKEN
        polls.append(path)
        if len(polls) == 1:
            return dribbled(200, {"status": "approved"})
        return answer(200, {"status": "approved"})

    with LoopbackServer(route, lifetime=LIFETIME_S) as platform:
        decision, took = timed(
            mode,
            options(platform.url),
            lambda c: c.wait_for_approval("payments:refund", "apr_1", timeout=6.0),
        )
    assert decision.allowed is True, decision
    assert len(polls) == 2
    assert took <= DEADLINE_S + MARGIN_S, took


@pytest.mark.parametrize("mode", MODES)
def test_ensure_authorized_stops_waiting_on_a_dribbled_poll(mode: str) -> None:
    fast = {"/v1/authorize": answer(200, PENDING)}
    with slow_at("/v1/approvals/", dribbled(200, {"status": "approved"}), fast) as platform:
        raised, took = timed(
            mode,
            options(platform.url, approval_timeout_s=1.0),
            lambda c: c.ensure_authorized("payments:refund"),
        )
    assert isinstance(raised, NotAuthorizedException), raised
    assert "timed out" in str(raised)
    assert took <= 1.0 + MARGIN_S, took


# --- attenuate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slow", ["dribbles_everything", "dribbles_the_body"])
def test_attenuate_raises_by_its_deadline(mode: str, slow: str) -> None:
    def act(client: Any) -> Any:
        session = client.begin_delegated_task(DELEGATED)
        return session.attenuate_for_call("hotel-agent", ["flights:book"])

    with slow_at("/v1/delegations/", SLOW[slow](200, CHILD)) as platform:
        raised, took = timed(mode, options(platform.url), act)
    assert isinstance(raised, DelegationException), raised
    assert_timed_out(str(raised), took)


# --- telemetry: close(timeout) holds, and its sender stops, under a dribbling platform --------------


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_close_ends_a_dribbled_delivery_by_its_timeout(credentials: str) -> None:
    with slow_at("/v1/ingest/", dribbled(200, {"accepted": 1})) as platform:
        client = TracengentClient(options(platform.url, credentials, request_timeout_s=10.0))
        client.record(AgentEvent(name="booked"))
        sender = client._core.dispatcher._thread
        deadline = time.monotonic() + 4.0
        while "/v1/ingest/events" not in platform.paths() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        client.close(1.0)
        took = time.monotonic() - started
        assert sender is not None
        sender.join(MARGIN_S)  # the request ends by close()'s deadline, not the platform's
        alive = sender.is_alive()
    assert took <= 1.0 + MARGIN_S, took
    assert not alive, "the sender is still reading a dribbled answer after close()"
    assert client.dropped_count >= 1
