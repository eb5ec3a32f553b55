"""The platform stand-in speaks the contract, so the SDK's end-to-end tests can trust it.

Driven with plain httpx and the generated builders/parsers only: if these pass, a failing
end-to-end test points at the SDK, not at its test server.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import tracengent_api as api
from tracengent_api.contract import EXCHANGES

from ._platform_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_INGEST_KEY,
    EVENTS_PATH,
    TOKEN_PATH,
    Answer,
    PlatformServer,
    Rule,
    ToolRule,
    covers,
)
from ._wire import compact, normalize, without

pytestmark = pytest.mark.integration

KEY: dict[str, Any] = {"ingest_key": DEMO_INGEST_KEY}


@pytest.fixture
def platform() -> Iterator[PlatformServer]:
    with PlatformServer() as server:
        yield server
    assert not server.errors


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _event(event_id: str, **extra: Any) -> api.Event:
    return api.Event.model_validate(
        {
            "eventId": event_id,
            "agentId": "demo-agent",
            "type": "action",
            "name": "charge-card",
            "status": "success",
            "occurredAt": "2026-01-01T00:00:00+00:00",
            **extra,
        }
    )


def _token(platform: PlatformServer, http: httpx.Client) -> str:
    body = api.TokenRequest(
        grant_type=api.GrantType.CLIENT_CREDENTIALS,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
    )
    request = api.build_oauth_token(body, base_url=platform.url)
    return api.parse_oauth_token(http.send(request)).access_token


def _ingest(platform: PlatformServer, http: httpx.Client, *ids: str, **auth: Any) -> httpx.Response:
    request = api.build_ingest_events(
        [_event(i) for i in ids], base_url=platform.url, **(auth or KEY)
    )
    return http.send(request)


def _authorize(
    platform: PlatformServer,
    http: httpx.Client,
    permission: str,
    token: str | None = None,
    **ctx: Any,
) -> api.AuthorizeResponse:
    body = api.AuthorizeRequest.model_validate({"permission": permission, "context": ctx or None})
    auth: dict[str, Any] = {"bearer_token": token} if token else dict(KEY)
    return api.parse_authorize(http.send(api.build_authorize(body, base_url=platform.url, **auth)))


# --- lifecycle ---------------------------------------------------------------------------------


def test_starts_fast_stops_clean_and_leaks_no_thread(http: httpx.Client) -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    server = PlatformServer().start()
    assert time.monotonic() - started < 0.5
    try:
        assert _ingest(server, http, "evt_1").status_code == 202
    finally:
        stopping = time.monotonic()
        server.stop()
        assert time.monotonic() - stopping < 1.0
    server.stop()  # idempotent
    assert set(threading.enumerate()) <= before
    with pytest.raises(RuntimeError):
        _ = server.url


# --- auth ---------------------------------------------------------------------------------------


def test_token_endpoint_issues_a_signed_jwt_and_refuses_wrong_credentials(
    platform: PlatformServer, http: httpx.Client
) -> None:
    token = _token(platform, http)
    claims = jwt.decode(token, platform.jwt_secret, algorithms=["HS256"])
    assert claims["permissions"] == ["*"] and claims["sub"] == "demo-agent"
    assert 890 < claims["exp"] - time.time() <= 900
    answer = http.post(f"{platform.url}{TOKEN_PATH}", data={"client_id": "x"})
    assert answer.status_code == 400
    bad = api.TokenRequest(
        grant_type=api.GrantType.CLIENT_CREDENTIALS, client_id="key_demo", client_secret="no"
    )
    with pytest.raises(api.AuthenticationError):
        api.parse_oauth_token(http.send(api.build_oauth_token(bad, base_url=platform.url)))
    assert platform.token_requests == 3 and platform.tokens_issued == 1
    # The contract's form order reached the wire unchanged.
    assert platform.requests_to(TOKEN_PATH)[0].body.startswith(b"grant_type=client_credentials&")


def test_every_other_endpoint_needs_a_live_token_or_the_ingest_key(
    platform: PlatformServer, http: httpx.Client
) -> None:
    token = _token(platform, http)
    assert _ingest(platform, http, "evt_1", bearer_token=token).status_code == 202
    for auth in (
        {"ingest_key": "agk_wrong"},
        {"bearer_token": "not.a.jwt"},
        {"bearer_token": platform.issue_access_token(ttl=-5)},
        {"bearer_token": jwt.encode({"exp": time.time() + 60, "jti": "x"}, "other-key-" * 4)},
    ):
        answer = _ingest(platform, http, "evt_2", **auth)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized" and answer.json()["reason"]
    assert http.post(f"{platform.url}{EVENTS_PATH}", content=b"[]").status_code == 401

    platform.revoke_tokens()
    assert _ingest(platform, http, "evt_3", bearer_token=token).json()["reason"] == "token revoked"
    fresh = _token(platform, http)  # the SDK's refetch works after a revocation
    assert _ingest(platform, http, "evt_3", bearer_token=fresh).status_code == 202

    platform.disable_agent()
    assert _ingest(platform, http, "evt_4", bearer_token=fresh).status_code == 401
    with pytest.raises(api.AuthenticationError, match="agent disabled"):
        _token(platform, http)
    assert _ingest(platform, http, "evt_4").status_code == 202  # the legacy org key still works
    platform.enable_agent()
    assert _token(platform, http)


# --- ingest ------------------------------------------------------------------------------------


def test_ingest_stores_deduplicates_and_records_gzip_batches(
    platform: PlatformServer, http: httpx.Client
) -> None:
    assert _ingest(platform, http, "evt_1", "evt_2").status_code == 202
    body = api.encode_ingest_events([_event("evt_2"), _event("evt_3")])
    request = api.build_ingest_events(
        gzip.compress(body),
        base_url=platform.url,
        content_encoding="gzip",
        ingest_key=DEMO_INGEST_KEY,
    )
    answer = http.send(request)
    assert answer.status_code == 202 and answer.json() == {"accepted": 1, "duplicates": 1}
    assert platform.wait_for_events(3, timeout=1)
    assert platform.event_ids() == ["evt_1", "evt_2", "evt_3"]
    assert platform.duplicates == 1
    assert platform.events[0]["name"] == "charge-card"
    plain, zipped = platform.ingest_requests
    assert (plain.gzipped, plain.event_count, plain.status) == (False, 2, 202)
    assert zipped.gzipped and zipped.body == body and zipped.raw_size == len(request.content)
    assert zipped.headers["x-ingest-key"] == DEMO_INGEST_KEY
    assert zipped.json()[0]["eventId"] == "evt_2"

    traces = api.TraceClose.model_validate(EXCHANGES["trace_close"].request | {"traceId": "trc_1"})
    api.parse_ingest_traces(
        http.send(
            api.build_ingest_traces(traces, base_url=platform.url, ingest_key=DEMO_INGEST_KEY)
        )
    )
    assert platform.traces[0]["traceId"] == "trc_1"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b'{"eventId":"evt_1"}', None),
        (b"[{}]", None),
        (b"not json", None),
        (b"not gzip", "gzip"),
    ],
)
def test_ingest_rejects_malformed_batches_with_400(
    platform: PlatformServer, http: httpx.Client, body: bytes, encoding: Any
) -> None:
    request = api.build_ingest_events(
        body, base_url=platform.url, content_encoding=encoding, ingest_key=DEMO_INGEST_KEY
    )
    with pytest.raises(api.ClientError) as error:
        api.parse_ingest_events(http.send(request))
    assert error.value.status_code == 400 and error.value.reason
    assert platform.events == [] and platform.ingest_requests[0].event_count is None


def test_ingest_refuses_oversize_bodies_with_413_and_keeps_the_connection_usable(
    http: httpx.Client,
) -> None:
    with PlatformServer(max_body_bytes=2_000) as platform:
        big = [_event(f"evt_{i}", input="x" * 100) for i in range(30)]
        with pytest.raises(api.PayloadTooLargeError):
            api.parse_ingest_events(
                http.send(
                    api.build_ingest_events(big, base_url=platform.url, ingest_key=DEMO_INGEST_KEY)
                )
            )
        assert _ingest(platform, http, "evt_small").status_code == 202
        assert platform.event_ids() == ["evt_small"]


# --- authorization -----------------------------------------------------------------------------


def test_default_policy_allows_holds_and_denies(
    platform: PlatformServer, http: httpx.Client
) -> None:
    refund = _authorize(platform, http, "payments:refund", amount=280)
    assert refund.allowed and refund.obligations and refund.obligations.max_amount == 500
    held = _authorize(platform, http, "payments:refund", amount=400)
    assert (held.status, held.allowed) == ("pending_approval", False)
    assert held.approval_id == "apr_1" and held.decision_id == "dec_2"

    def approval(approval_id: str) -> api.ApprovalResponse:
        request = api.build_get_approval(
            approval_id, base_url=platform.url, ingest_key=DEMO_INGEST_KEY
        )
        return api.parse_get_approval(http.send(request))

    assert approval("apr_1").status == "pending"
    platform.set_approval_status("apr_1", "approved")
    assert approval("apr_1").status == "approved"
    with pytest.raises(api.NotFoundError):
        approval("apr_404")

    assert _authorize(platform, http, "llm:call", estimatedTokens=10_000).allowed
    over = _authorize(platform, http, "llm:call", estimatedTokens=10_001)
    assert (over.allowed, over.reason) == (False, "token budget exceeded")
    assert _authorize(platform, http, "admin:delete_user").status == "denied"
    assert _authorize(platform, http, "flights:book").status == "allowed"

    platform.policy["flights:*"] = Rule(decision="pending", approval_status="approved")
    platform.auto_resolve_approvals("denied", after_polls=2)
    flight = _authorize(platform, http, "flights:book")
    assert flight.approval_id and approval(flight.approval_id).status == "approved"
    third = _authorize(platform, http, "payments:refund", amount=301)
    assert third.approval_id
    assert [approval(third.approval_id).status for _ in range(3)] == ["pending", "denied", "denied"]


def test_token_permissions_and_budget_are_configurable(http: httpx.Client) -> None:
    with PlatformServer(permissions=["payments:*"], token_budget=50) as platform:
        token = _token(platform, http)
        assert platform.decode_token(token)["permissions"] == ["payments:*"]
        assert _authorize(platform, http, "payments:refund", token, amount=10).allowed
        assert not _authorize(platform, http, "flights:book", token).allowed
        assert not _authorize(platform, http, "llm:call", estimatedTokens=51).allowed


def test_tool_authorize_applies_denylist_and_table(http: httpx.Client) -> None:
    rules = {
        ("mcp", "delete_repo"): ToolRule(decision="deny", reason="destructive"),
        ("function", "wire_money"): ToolRule(decision="pending"),
        ("http", "api.stripe.com"): ToolRule(redactions=({"field": "$.card", "strategy": "mask"},)),
    }
    with PlatformServer(egress_denylist=["evil.example"], tool_rules=rules) as platform:

        def ask(**body: Any) -> api.ToolAuthorizeResponse:
            typed = api.ToolAuthorizeRequest.model_validate(body)
            request = api.build_tool_authorize(
                typed, base_url=platform.url, ingest_key=DEMO_INGEST_KEY
            )
            return api.parse_tool_authorize(http.send(request))

        egress = ask(transport="http", method="GET", host="evil.example", path="/")
        assert (egress.allowed, egress.outcome, egress.reason) == (
            False,
            "egress_deny",
            "host not on the egress allowlist",
        )
        assert ask(transport="mcp", toolName="delete_repo").outcome == "policy_deny"
        pending = ask(transport="function", functionName="wire_money", body={"to": "x"})
        assert pending.status == "pending_approval" and pending.approval_id == "apr_1"
        stripe = ask(transport="http", host="api.stripe.com", body={"card": "4242"})
        assert stripe.redactions and stripe.redactions[0].strategy == "mask"
        assert ask(transport="mcp", toolName="search").outcome == "policy_allow"
        assert [r["transport"] for r in platform.tool_requests] == [
            "http",
            "mcp",
            "function",
            "http",
            "mcp",
        ]


# --- delegation --------------------------------------------------------------------------------


def test_attenuation_narrows_and_refuses_to_widen(
    platform: PlatformServer, http: httpx.Client
) -> None:
    parent = platform.mint_delegated_token(["hotels:*", "flights:book"], max_amount=500, ttl=600)
    grant = platform.decode_token(parent)["grant_id"]

    def attenuate(token: str, grant_id: str, **body: Any) -> httpx.Response:
        typed = api.AttenuateRequest.model_validate({"grantedToAgentId": "agt_hotel", **body})
        return http.send(
            api.build_attenuate(grant_id, typed, base_url=platform.url, bearer_token=token)
        )

    ok = attenuate(parent, grant, permissions=["hotels:book"], maxAmount=300, expiresInSeconds=60)
    child = api.parse_attenuate(ok).token
    assert child.expires_in == 60 and child.token_type == "Bearer" and child.jti
    claims = platform.decode_token(child.access_token)
    assert claims["delegation_chain"] == ["u_1", "demo-agent", "agt_hotel"]
    assert claims["grant_id"] != grant and claims["max_amount"] == 300
    assert platform.delegations[0]["parent_grant_id"] == grant

    decision = _authorize(platform, http, "hotels:book", child.access_token, amount=200)
    assert decision.allowed and decision.acting_for == "u_1"
    assert decision.chain == ["u_1", "demo-agent", "agt_hotel"]
    assert not _authorize(platform, http, "hotels:book", child.access_token, amount=301).allowed
    assert not _authorize(platform, http, "flights:book", child.access_token).allowed

    for body in (
        {"permissions": ["cars:rent"]},
        {"permissions": ["*"]},
        {"permissions": ["hotels:book"], "maxAmount": 501},
        {"permissions": ["hotels:book"], "expiresInSeconds": 3_600},
    ):
        refused = attenuate(parent, grant, **body)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden", body
    agent_token = platform.issue_access_token()
    assert attenuate(agent_token, grant, permissions=["hotels:book"]).status_code == 403
    assert attenuate(parent, "dlg_other", permissions=["hotels:book"]).status_code == 403


def test_permission_patterns_follow_the_contract() -> None:
    assert covers("*", "anything") and covers("flights:*", "flights:book")
    assert covers("flights:*", "flights:*") and not covers("flights:*", "flightsx:book")
    assert not covers("flights:*", "*") and not covers("flights:book", "flights:*")


# --- faults ------------------------------------------------------------------------------------


def test_scripted_answers_come_first_then_normal_service(
    platform: PlatformServer, http: httpx.Client
) -> None:
    platform.fail_next(EVENTS_PATH, 503, times=2)
    platform.fail_next(EVENTS_PATH, 429, retry_after=1)
    platform.script(EVENTS_PATH, Answer(status=400, body={"error": "nope"}), Answer(status=413))
    statuses = [_ingest(platform, http, "evt_1").status_code for _ in range(6)]
    assert statuses == [503, 503, 429, 400, 413, 202]
    assert [r.status for r in platform.ingest_requests] == statuses
    assert platform.ingest_requests[2].status == 429
    platform.fail_next(EVENTS_PATH, 429, retry_after=1)
    with pytest.raises(api.RateLimitError) as error:
        api.parse_ingest_events(_ingest(platform, http, "evt_1"))
    assert error.value.retry_after == 1.0
    assert platform.event_ids() == ["evt_1"] and platform.pending_scripts(EVENTS_PATH) == 0

    # Delivered, but the answer was lost: the retry is a duplicate the platform absorbs.
    platform.fail_next(EVENTS_PATH, 502, process=True)
    assert _ingest(platform, http, "evt_2").status_code == 502
    assert _ingest(platform, http, "evt_2").status_code == 202
    assert platform.event_ids() == ["evt_1", "evt_2"] and platform.duplicates == 1


def test_concurrent_retried_batches_are_stored_once(platform: PlatformServer) -> None:
    def send(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            for _ in range(3):
                _ingest(platform, client, "evt_shared_1", "evt_shared_2", f"evt_own_{worker}")

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert platform.wait_for_events(8, timeout=1)
    assert len(platform.events) == 8 and platform.duplicates == 6 * 3 * 3 - 8
    assert all(r.status == 202 for r in platform.ingest_requests)


def test_down_and_dropped_requests_close_the_connection(
    platform: PlatformServer, http: httpx.Client
) -> None:
    platform.down = True
    with pytest.raises(httpx.RemoteProtocolError):
        _ingest(platform, http, "evt_1")
    platform.down = False
    platform.drop_next(EVENTS_PATH)
    with pytest.raises(httpx.RemoteProtocolError):
        _ingest(platform, http, "evt_1")
    assert _ingest(platform, http, "evt_1").status_code == 202
    assert [r.status for r in platform.ingest_requests] == [None, None, 202]


def test_blackhole_holds_until_the_client_gives_up_and_never_blocks_stop() -> None:
    with httpx.Client(timeout=0.3) as http:
        platform = PlatformServer().start()
        try:
            platform.blackhole = True
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                _ingest(platform, http, "evt_1")
            assert time.monotonic() - started < 2.0
            assert platform.wait_for_requests(EVENTS_PATH, 1, timeout=1)
            platform.blackhole = False
            platform.hold_next(EVENTS_PATH)
            held = threading.Thread(target=lambda: _swallow(lambda: _ingest(platform, http, "e")))
            held.start()
            assert platform.wait_for_requests(EVENTS_PATH, 2, timeout=1)
        finally:
            stopping = time.monotonic()
            platform.stop()
            assert time.monotonic() - stopping < 1.0
        held.join(2)
        assert platform.events == []


def test_holds_are_bounded_by_max_hold() -> None:
    with PlatformServer(max_hold=0.2) as platform, httpx.Client(timeout=3) as http:
        platform.blackhole = True
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            _ingest(platform, http, "evt_1")
        assert 0.2 <= time.monotonic() - started < 2.5


def test_delay_slows_every_answer(platform: PlatformServer, http: httpx.Client) -> None:
    platform.delay = 0.2
    started = time.monotonic()
    assert _ingest(platform, http, "evt_1").status_code == 202
    assert time.monotonic() - started >= 0.2
    platform.reset()
    assert platform.delay == 0 and platform.events == [] and platform.requests == []


def _swallow(call: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


# --- the contract's canonical exchanges -------------------------------------------------------


def test_answers_match_the_contracts_canonical_exchanges(
    platform: PlatformServer, http: httpx.Client
) -> None:
    token = _token(platform, http)
    delegated = platform.mint_delegated_token(
        ["hotels:*"], max_amount=500, ttl=600, grant_id="dlg_1"
    )
    for exchange in EXCHANGES.values():
        if exchange.request_form is not None:
            answer = http.post(platform.url + exchange.path, data=exchange.request_form)
        else:
            bearer = delegated if exchange.operation == "attenuate" else token
            body = json.dumps(exchange.request).replace('"<id>"', '"evt_1"')
            body = body.replace('"<ts>"', '"2026-01-01T00:00:00+00:00"')
            answer = http.post(
                platform.url + exchange.path,
                content=body,
                headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
            )
        assert answer.is_success, (exchange.name, answer.text)
        if exchange.response is not None:
            got = without(normalize(answer.json(), exchange.response), exchange.ignore_keys)
            if exchange.operation == "attenuate":
                got["token"]["jti"] = "j_1"  # a server-wide counter, not a sentinel
            assert compact(got) == compact(exchange.response), exchange.name
