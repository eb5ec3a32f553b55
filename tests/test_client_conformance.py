"""The high-level client sends exactly the contract's exchanges (modulo sentinels)."""

from __future__ import annotations

from urllib.parse import urlencode

from tracengent_api.contract import EXCHANGES

from tracengent import AgentEvent, Money, TracengentClient, TracengentOptions

from ._recording import RecordingPlatform
from ._wire import assert_conforms


def demo_client(platform: RecordingPlatform, **overrides: object) -> TracengentClient:
    options = TracengentOptions(
        agent_id="demo-agent", client_id="key_demo", client_secret="ags_demo", **overrides
    )
    return TracengentClient(options, transport=platform.transport)


def test_oauth_token_and_ingest_events() -> None:
    platform = RecordingPlatform()
    with demo_client(platform) as client:
        client.record(AgentEvent(name="charge-card", cost=Money.eur(280)))
        assert client.flush(5)
    token_exchange = EXCHANGES["oauth_token"]
    assert token_exchange.request_form is not None
    assert platform.raw("/v1/oauth/token") == [urlencode(token_exchange.request_form).encode()]
    [batch] = platform.raw("/v1/ingest/events")
    assert_conforms(batch, EXCHANGES["ingest_events"].request)


def test_authorize() -> None:
    platform = RecordingPlatform()
    with demo_client(platform) as client:
        decision = client.authorize("payments:refund", {"amount": 280})
    assert decision.allowed
    [body] = platform.raw("/v1/authorize")
    assert_conforms(body, EXCHANGES["authorize"].request)


def test_trace_close() -> None:
    platform = RecordingPlatform()
    with demo_client(platform) as client:
        with client.begin_trace("book a trip"):
            pass
        assert client.flush(5)
    [body] = platform.raw("/v1/ingest/traces")
    assert_conforms(body, EXCHANGES["trace_close"].request)
