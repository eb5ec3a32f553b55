"""Delegation: a session acts under its token only, and attenuation can only narrow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import jwt
import pytest
from tracengent_api.contract import EXCHANGES

from tracengent import (
    AsyncTracengentClient,
    DelegationException,
    TracengentClient,
    TracengentOptions,
)

from ._fault_front import FaultFront
from ._recording import RecordingPlatform
from ._wire import assert_conforms

JWKS_PATH = "/.well-known/jwks.json"

# The agents a delegation may reach: the platform refuses to attenuate for an unknown callee.
POLICY = """
currency = "EUR"

[[agents]]
id = "demo-agent"
client_id = "key_demo"
client_secret = "ags_demo"
ingest_key = "agk_demo"
permissions = ["flights:*", "hotels:*", "travel:*"]

[[agents]]
id = "agt_hotel"
ingest_key = "agk_hotel"
permissions = ["hotels:*", "travel:hotels:*"]

[[agents]]
id = "agt_booking"
ingest_key = "agk_booking"
permissions = ["travel:hotels:book"]

[[agents]]
id = "agt_x"
ingest_key = "agk_x"
permissions = ["hotels:book"]
"""


@pytest.fixture
def platform() -> Iterator[FaultFront]:
    with FaultFront(POLICY) as front:
        yield front


def delegated(
    platform: FaultFront,
    permissions: list[str],
    acting_for: str = "u_1",
    max_amount: float | None = None,
    ttl: int = 300,
) -> str:
    """A user's grant to demo-agent, as `tracengent grant` mints it: the delegated token."""
    _, token = platform.platform.grant(
        "demo-agent", permissions, acting_for=acting_for, max_amount=max_amount, ttl_s=ttl
    )
    return token


def without_jwks() -> RecordingPlatform:
    """A recording platform that serves no JWKS (404): tokens are checked by it alone."""
    recording = RecordingPlatform()
    recording.script(JWKS_PATH, lambda _r: httpx.Response(404, json={"error": "not_found"}))
    return recording


def attenuated(platform: FaultFront) -> list[object]:
    """The child tokens the platform minted (its answers to attenuation requests)."""
    return [r for r in platform.requests if r.path.endswith("/attenuate") and r.status == 200]


def client_for(platform: FaultFront) -> TracengentClient:
    return TracengentClient(
        TracengentOptions(
            agent_id="demo-agent",
            base_url=platform.url,
            client_id="key_demo",
            client_secret="ags_demo",
        )
    )


def test_attenuate_conforms() -> None:
    recording = without_jwks()
    recording.script(
        "/v1/delegations/dlg_1/attenuate",
        lambda _r: httpx.Response(
            200,
            json={
                "token": {
                    "accessToken": "a.b.c",
                    "tokenType": "Bearer",
                    "expiresIn": 300,
                    "jti": "j_1",
                }
            },
        ),
    )
    token = jwt.encode(
        {"grant_id": "dlg_1", "delegated_permissions": ["hotels:*"]}, "k" * 32, algorithm="HS256"
    )
    options = TracengentOptions(
        agent_id="demo-agent", client_id="key_demo", client_secret="ags_demo"
    )
    with TracengentClient(options, transport=recording.transport) as client:
        child = client.begin_delegated_task(token).attenuate_for_call(
            "agt_hotel", ["hotels:book"], max_amount=500
        )
    assert child.token == "a.b.c"
    [request] = [r for r in recording.requests if r.url.path.endswith("/attenuate")]
    assert request.headers["authorization"] == f"Bearer {token}"
    assert_conforms(request.content, EXCHANGES["attenuate"].request)
    assert recording.raw("/v1/oauth/token") == []  # the agent's own credentials were never used


@pytest.mark.parametrize("answered", ["", "   ", "\n"])
def test_an_empty_child_token_is_a_delegation_error(answered: str) -> None:
    recording = without_jwks()
    answer = {"token": {"accessToken": answered, "tokenType": "Bearer", "expiresIn": 300}}
    recording.script("/v1/delegations/dlg_1/attenuate", lambda _r: httpx.Response(200, json=answer))
    token = jwt.encode(
        {"grant_id": "dlg_1", "delegated_permissions": ["hotels:*"]}, "k" * 32, algorithm="HS256"
    )
    options = TracengentOptions(agent_id="demo-agent", client_id="key_demo", client_secret="s")
    with TracengentClient(options, transport=recording.transport) as client:
        session = client.begin_delegated_task(token)
        with pytest.raises(DelegationException, match="empty token"):
            session.attenuate_for_call("agt_hotel", ["hotels:book"])


def test_a_session_authorizes_with_its_delegated_token(platform: FaultFront) -> None:
    token = delegated(platform, ["flights:*"], acting_for="besar")
    with client_for(platform) as client:
        session = client.begin_delegated_task(token)
        assert session.is_delegated and session.acting_for == "besar"
        assert session.chain == ["besar", "demo-agent"] and session.delegated_permissions == [
            "flights:*"
        ]
        assert isinstance(session.expires_at, datetime) and session.expires_at > datetime.now(
            timezone.utc
        )
        decision = session.authorize("flights:book", {"amount": 100})
        refused = session.authorize("hotels:book")
    assert (
        decision.allowed
        and decision.acting_for == "besar"
        and decision.chain == ["besar", "demo-agent"]
    )
    assert not refused.allowed
    sent = [r.headers["authorization"] for r in platform.requests_to("/v1/authorize")]
    assert sent == [f"Bearer {token}"] * 2
    assert platform.token_requests == 0
    assert token not in repr(session)


def test_a_chain_of_two_hops(platform: FaultFront) -> None:
    token = delegated(platform, ["travel:*"], acting_for="besar", max_amount=1000)
    with client_for(platform) as client:
        root = client.begin_delegated_task(token)
        hotel = root.attenuate_for_call("agt_hotel", ["travel:hotels:*"], max_amount=500)
        booking = hotel.attenuate_for_call(
            "agt_booking", ["travel:hotels:book"], max_amount=200, reason="one night"
        )
        assert booking.chain == ["besar", "demo-agent", "agt_hotel", "agt_booking"]
        assert booking.delegated_permissions == ["travel:hotels:book"]
        assert booking.authorize("travel:hotels:book", {"amount": 150}).allowed
        with pytest.raises(DelegationException, match="travel:hotels:cancel"):
            booking.attenuate_for_call("agt_x", ["travel:hotels:cancel"])


def test_widening_is_refused_locally_before_any_request(platform: FaultFront) -> None:
    token = delegated(platform, ["hotels:book"], max_amount=500)
    with client_for(platform) as client:
        session = client.begin_delegated_task(token)
        with pytest.raises(DelegationException, match="'flights:book' is not covered"):
            session.attenuate_for_call("agt_x", ["hotels:book", "flights:book"])
        with pytest.raises(DelegationException, match="maxAmount 900 is larger"):
            session.attenuate_for_call("agt_x", ["hotels:book"], max_amount=900)
    assert attenuated(platform) == []
    assert [r.path for r in platform.requests] == [JWKS_PATH]  # the offline check's keys, once


def test_widening_is_refused_by_the_platform_with_its_reason(platform: FaultFront) -> None:
    token = delegated(platform, ["hotels:book"], ttl=60)
    with client_for(platform) as client:
        with pytest.raises(DelegationException) as refused:
            client.begin_delegated_task(token).attenuate_for_call(
                "agt_x", ["hotels:book"], expires_in_seconds=3600
            )
    assert "403" in str(refused.value)
    assert "expir" in str(refused.value).lower()


def test_an_expired_or_plain_token_cannot_attenuate(platform: FaultFront) -> None:
    expired = delegated(platform, ["hotels:book"], ttl=-10)
    with client_for(platform) as client:
        with pytest.raises(DelegationException, match="has expired"):
            client.begin_delegated_task(expired).attenuate_for_call("agt_x", ["hotels:book"])
        access = platform.platform.keys.mint({"sub": "demo-agent", "permissions": ["*"]}, 900)
        plain = client.begin_delegated_task(access)  # signed as the token endpoint signs
        assert not plain.is_delegated
        with pytest.raises(DelegationException, match="not a delegated token"):
            plain.attenuate_for_call("agt_x", ["hotels:book"])
        with pytest.raises(DelegationException, match="not a signed JWT"):
            client.begin_delegated_task("not-a-jwt")
        spaced = client.begin_delegated_task("two words")
        assert "whitespace" in spaced.authorize("x").reason
        with pytest.raises(DelegationException, match="whitespace"):
            spaced.attenuate_for_call("agt_x", ["x"])
    assert attenuated(platform) == []


async def test_async_delegation(platform: FaultFront) -> None:
    token = delegated(platform, ["hotels:*"], acting_for="besar")
    options = TracengentOptions(agent_id="demo-agent", base_url=platform.url, ingest_key="agk_demo")
    async with AsyncTracengentClient(options) as client:
        session = client.begin_delegated_task(token)
        child = await session.attenuate_for_call("agt_hotel", ["hotels:book"])
        decision = await child.authorize("hotels:book")
        with pytest.raises(DelegationException):
            await child.attenuate_for_call("agt_x", ["flights:book"])
    assert child.chain == ["besar", "demo-agent", "agt_hotel"]
    assert decision.allowed and decision.acting_for == "besar"
