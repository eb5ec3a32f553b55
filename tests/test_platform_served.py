"""`tracengent dev` over real HTTP: every endpoint and decision, driven by the sync and async SDK."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from tracengent import (
    AsyncTracengentClient,
    DelegationException,
    LlmCallResult,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
    governed_client,
)
from tracengent.platform._keys import SigningKeys

from ._served import Served, served_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("platform")) as platform:
        yield platform


def options(served: Served, **overrides: object) -> TracengentOptions:
    values: dict[str, object] = {
        "agent_id": "demo-agent",
        "base_url": served.url,
        "client_id": "key_demo",
        "client_secret": "ags_demo",
        "flush_interval_ms": 50,
        "approval_poll_interval_s": 0.1,
    }
    values.update(overrides)
    return TracengentOptions(**values)  # type: ignore[arg-type]


def token(served: Served) -> str:
    answer = httpx.post(
        served.url + "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "key_demo",
            "client_secret": "ags_demo",
        },
    )
    return str(answer.json()["access_token"])


def test_tokens_are_eddsa_jwts_verifiable_with_the_published_keys(served: Served) -> None:
    access = token(served)
    jwks = httpx.get(served.url + "/.well-known/jwks.json").json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(access, key.key, algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["sub"] == "demo-agent" and "payments:*" in claims["permissions"]
    wrong = httpx.post(
        served.url + "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "key_demo", "client_secret": "nope"},
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_every_outcome_through_the_sync_client(served: Served) -> None:
    with TracengentClient(options(served)) as client:
        with client.begin_trace("demo") as trace:
            assert client.authorize("flights:book").allowed
            assert client.authorize("admin:wipe").status == "denied"
            refund = client.authorize("payments:refund", {"amount": 280, "currency": "EUR"})
            assert (
                refund.allowed
                and refund.obligations
                and refund.obligations.redact_fields == ["$.card"]
            )
            assert client.authorize("payments:refund", {"amount": 2000}).reason.startswith(
                "amount 2000 EUR exceeds"
            )
            pending = client.authorize("payments:refund", {"amount": 400, "currency": "USD"})
            assert pending.pending and pending.approval_id  # 400 USD = 368 EUR > 300
            assert (
                "unknown currency"
                in client.authorize("payments:refund", {"amount": 1, "currency": "XYZ"}).reason
            )
            with pytest.raises(ToolDeniedException) as egress:
                governed_client(
                    client, inner=httpx.MockTransport(lambda r: httpx.Response(200))
                ).get("https://evil.example.net/")
            assert egress.value.outcome == "egress_deny"
            guard = client.tools.authorize_mcp("search_flights", {"from": "LIS"})
            assert guard.allowed and guard.decision.outcome == "policy_allow"
            assert client.tools.authorize_function("rm_rf", {}).decision.outcome == "policy_deny"
        assert client.flush(5)
    decisions = served.store().decisions(trace.trace_id)
    assert len(decisions) >= 9 and {d.trace_id for d in decisions} == {trace.trace_id}


def test_events_are_stored_once_even_when_resent(served: Served) -> None:
    access = token(served)
    batch = [
        {
            "eventId": "evt_dup_1",
            "agentId": "demo-agent",
            "type": "action",
            "name": "x",
            "status": "success",
            "occurredAt": "2026-01-01T00:00:00+00:00",
        }
    ]
    headers = {
        "Authorization": f"Bearer {access}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    for _ in range(3):
        answer = httpx.post(
            served.url + "/v1/ingest/events",
            content=gzip.compress(json.dumps(batch).encode()),
            headers=headers,
        )
        assert answer.status_code == 202
    assert answer.json() == {"accepted": 0, "duplicates": 1}
    assert [e["eventId"] for e in served.store().events() if e["eventId"] == "evt_dup_1"] == [
        "evt_dup_1"
    ]


def test_the_approval_flow_with_the_cli(served: Served) -> None:
    with TracengentClient(options(served, approval_timeout_s=20)) as client:
        result: list[object] = []

        def ask() -> None:
            try:
                result.append(client.ensure_authorized("payments:refund", {"amount": 450}))
            except NotAuthorizedException as error:
                result.append(error)

        import threading

        known = {a.approval_id for a in served.store().approvals()}
        asking = threading.Thread(target=ask)
        asking.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = [a for a in served.store().approvals("pending") if a.approval_id not in known]
            if pending:
                break
            time.sleep(0.05)
        approved = served.cli("approve", pending[0].approval_id)
        assert approved.returncode == 0, approved.stderr
        asking.join(20)
    assert result and not isinstance(result[0], Exception)


def test_budget_reservation_and_reconciliation(served: Served) -> None:
    store = served.store()
    before = store.tokens_committed("demo-agent")
    with TracengentClient(options(served)) as client:
        with client.begin_trace("llm") as trace:
            trace.track_llm_call("a", lambda: LlmCallResult("x", tokens=300), estimated_tokens=1000)
            assert store.tokens_committed("demo-agent") == before + 1000  # reserved
        assert client.flush(5)
        assert store.tokens_committed("demo-agent") == before + 300  # reconciled to the usage
        with pytest.raises(NotAuthorizedException, match="token budget exceeded"):
            client.ensure_authorized("llm:call", {"estimatedTokens": 10**9})


def test_attenuation_and_revocation(served: Served) -> None:
    granted = served.cli(
        "grant", "demo-agent", "hotels:*", "--max-amount", "500", "--acting-for", "u_9"
    )
    assert granted.returncode == 0, granted.stderr
    root_token = granted.stdout.strip()
    with TracengentClient(options(served)) as client:
        root = client.begin_delegated_task(root_token)
        child = root.attenuate_for_call("agt_hotel", ["hotels:book"], max_amount=200)
        assert child.chain == ["u_9", "demo-agent", "agt_hotel"]
        assert child.authorize("hotels:book", {"amount": 150}).allowed
        assert not child.authorize("hotels:book", {"amount": 250}).allowed  # above the grant's 200
        with pytest.raises(DelegationException, match="403"):
            root.attenuate_for_call("agt_hotel", ["hotels:book"], expires_in_seconds=10**7)
        assert served.cli("revoke", root.grant_id or "").returncode == 0
        revoked = child.authorize("hotels:book", {"amount": 10})
        assert not revoked.allowed and "401" in revoked.reason


async def test_the_async_client_against_the_served_platform(served: Served) -> None:
    async with AsyncTracengentClient(options(served)) as client:
        async with client.begin_trace("async") as trace:
            decisions = await asyncio.gather(*(client.authorize("flights:book") for _ in range(5)))
            assert all(d.allowed for d in decisions)
            await trace.track_tool_call("search", lambda: "ok")
            guard = await client.tools.authorize_mcp("book_flight", {"flight": "TP1"})
            assert guard.allowed
        assert await client.flush(5)
    assert [e["name"] for e in served.store().events(trace_id=trace.trace_id)] == ["search"]


def _none_alg(claims: dict[str, object]) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("path", "body", "headers_kind", "status"),
    [
        ("/v1/authorize", b"{not json", "token", 400),
        ("/v1/authorize", b'{"permission": 5}', "token", 400),
        ("/v1/authorize", b'{"permission": "x", "surprise": 1}', "token", 400),
        ("/v1/ingest/events", b'[{"eventId": "evt_bad"}]', "token", 400),
        ("/v1/ingest/events", b"[]", "none", 401),
        ("/v1/authorize", b'{"permission": "x"}', "forged", 401),
        ("/v1/authorize", b'{"permission": "x"}', "expired", 401),
        ("/v1/authorize", b'{"permission": "x"}', "alg_none", 401),
        ("/v1/tool-authorize", b'{"transport": "carrier-pigeon"}', "token", 400),
        (
            "/v1/delegations/dlg_1/attenuate",
            b'{"grantedToAgentId": "x", "permissions": []}',
            "token",
            403,
        ),
        ("/v1/ingest/events", b"\x1f\x8b garbage", "gzip", 400),
    ],
)
def test_bad_input_is_a_json_4xx_and_stores_nothing(
    served: Served, path: str, body: bytes, headers_kind: str, status: int
) -> None:
    access = token(served)
    claims = jwt.decode(access, options={"verify_signature": False})
    headers = {"Content-Type": "application/json"}
    if headers_kind in ("token", "gzip"):
        headers["Authorization"] = f"Bearer {access}"
    if headers_kind == "gzip":
        headers["Content-Encoding"] = "gzip"
    if headers_kind == "forged":
        headers["Authorization"] = "Bearer " + jwt.encode(
            claims, "a-guessed-secret-of-32-bytes-len", algorithm="HS256"
        )
    if headers_kind == "expired":
        keys = SigningKeys.from_store(
            served.store()
        )  # the platform's own key: only the expiry is wrong
        headers["Authorization"] = "Bearer " + keys.mint({"sub": "demo-agent"}, ttl_s=-60)
    if headers_kind == "alg_none":
        headers["Authorization"] = "Bearer " + _none_alg(claims)
    store = served.store()
    events, decisions = store.event_count(), len(store.decisions())
    answer = httpx.post(served.url + path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error", "reason"}
    assert (store.event_count(), len(store.decisions())) == (events, decisions)
