"""Tokens: fetched once, refreshed once for many threads, 401 handling, no secret in logs."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import jwt
import pytest

from tracengent import AgentEvent, NotAuthorizedException, TracengentClient, TracengentOptions

from ._recording import RecordingPlatform

SECRET = "ags_S3CRET-value"
INGEST_KEY = "agk_S3CRET-key"


def token(permissions: list[str], expires_in: int = 900) -> dict[str, object]:
    access = jwt.encode(
        {"permissions": permissions, "sub": "demo-agent"}, "k" * 32, algorithm="HS256"
    )
    return {"access_token": access, "token_type": "Bearer", "expires_in": expires_in}


def client_for(platform: RecordingPlatform, **overrides: object) -> TracengentClient:
    options: dict[str, object] = {
        "agent_id": "demo-agent",
        "client_id": "key_demo",
        "client_secret": SECRET,
    }
    options.update(overrides)
    return TracengentClient(TracengentOptions(**options), transport=platform.transport)  # type: ignore[arg-type]


def token_requests(platform: RecordingPlatform) -> int:
    return len(platform.raw("/v1/oauth/token"))


def test_the_token_is_fetched_once_and_cached() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/oauth/token", lambda _r: httpx.Response(200, json=token(["flights:*"])))
    with client_for(platform) as client:
        for _ in range(5):
            client.authorize("flights:book")
        assert client.has_permission("flights:book")
        assert not client.has_permission("hotels:book")
    assert token_requests(platform) == 1
    assert all(r.headers["authorization"].startswith("Bearer ") for r in platform.requests[1:])


def test_fifty_threads_on_an_expired_token_cause_one_token_request() -> None:
    platform = RecordingPlatform()
    platform.script(
        "/v1/oauth/token", lambda _r: httpx.Response(200, json=token(["*"], expires_in=0))
    )

    def slow_token(_request: httpx.Request) -> httpx.Response:
        time.sleep(0.2)  # keep the fetch in flight while the other threads arrive
        return httpx.Response(200, json=token(["*"]))

    platform.script("/v1/oauth/token", slow_token)
    with client_for(platform) as client:
        assert client.has_permission("x")  # primes an already-expired token
        barrier = threading.Barrier(50)
        results: list[bool] = []

        def worker() -> None:
            barrier.wait(5)
            results.append(client.authorize("anything").allowed)

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == [True] * 50
    assert token_requests(platform) == 2


def test_a_401_refetches_the_token_once_and_retries_once() -> None:
    platform = RecordingPlatform()
    platform.script("/v1/authorize", lambda _r: httpx.Response(401, json={"error": "expired"}))
    with client_for(platform) as client:
        assert client.authorize("payments:refund").allowed
    assert token_requests(platform) == 2
    assert len(platform.raw("/v1/authorize")) == 2


def test_a_second_401_is_a_deny_not_a_loop() -> None:
    platform = RecordingPlatform()

    def unauthorized(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "unauthorized", "reason": "revoked"})

    platform.script("/v1/authorize", unauthorized, unauthorized, unauthorized)
    with client_for(platform) as client:
        decision = client.authorize("payments:refund")
    assert not decision.allowed
    assert "401" in decision.reason and "revoked" in decision.reason
    assert len(platform.raw("/v1/authorize")) == 2


def test_refused_credentials_disable_sending_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = RecordingPlatform()
    for _ in range(3):
        platform.script(
            "/v1/oauth/token", lambda _r: httpx.Response(401, json={"error": "revoked"})
        )
    caplog.set_level(logging.WARNING, logger="tracengent")
    client = client_for(platform, flush_interval_ms=10)
    for i in range(30):
        client.record(AgentEvent(name=f"e{i}"))
        if i % 10 == 0:
            client.flush(2)
    client.close(2)
    assert token_requests(platform) == 1
    assert client.dropped_count == 30
    assert platform.raw("/v1/ingest/events") == []
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    with pytest.raises(NotAuthorizedException) as denied:
        client_for(platform).ensure_authorized("payments:refund")
    assert "no access token" in denied.value.reason


def test_ingest_key_mode_sends_the_key_and_has_no_token_permissions() -> None:
    platform = RecordingPlatform()
    with client_for(platform, client_id=None, client_secret=None, ingest_key=INGEST_KEY) as client:
        client.record(AgentEvent(name="e"))
        assert client.authorize("x").allowed
        assert client.has_permission("x") is False
        assert client.token_provider is None
    assert token_requests(platform) == 0
    assert {r.headers.get("x-ingest-key") for r in platform.requests} == {INGEST_KEY}
    assert not any("authorization" in r.headers for r in platform.requests)


def test_no_secret_or_token_reaches_a_log_record_or_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform = RecordingPlatform()
    issued = token(["*"])
    platform.script("/v1/oauth/token", lambda _r: httpx.Response(200, json=issued))
    platform.script("/v1/authorize", lambda _r: httpx.Response(500, text="boom"))
    platform.script("/v1/ingest/events", *[lambda _r: httpx.Response(400, text="bad")] * 3)
    caplog.set_level(logging.DEBUG)
    options = TracengentOptions(agent_id="demo-agent", client_id="key_demo", client_secret=SECRET)
    with TracengentClient(options, transport=platform.transport) as client:
        client.record(AgentEvent(name="e"))
        client.flush(2)
        denied = client.authorize("x")
        messages = [str(options), repr(options), denied.reason]
    messages += [record.getMessage() for record in caplog.records]
    text = "\n".join(messages)
    assert "500" in denied.reason
    for secret in (SECRET, str(issued["access_token"]), "Bearer "):
        assert secret not in text
