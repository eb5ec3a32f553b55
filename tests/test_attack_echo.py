"""Issue #11, secrets: a proxy in front of the platform that echoes requests (and a platform
whose reasons quote them) must not get the client's secrets into a reason, an exception, a log
record or an event. Real HTTP on 127.0.0.1: `tracengent dev` behind a loopback proxy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    governed_client,
    tracked_client,
)

from ._served import Exchange, PlatformProxy, Served, echo_request, served_platform
from ._tool_server import ToolServer

pytestmark = pytest.mark.integration

# Secrets in no vendor's format, so only knowing them (not their shape) can scrub them.
SECRET = "plainsecretvalue42"
INGEST = "plainingestkey42"
POLICY = f"""
currency = "EUR"
egress_allowlist = ["127.0.0.1"]

[[agents]]
id = "echo-agent"
client_id = "key_echo"
client_secret = "{SECRET}"
ingest_key = "{INGEST}"
permissions = ["payments:*"]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_platform(tmp_path_factory.mktemp("echo"), POLICY) as platform:
        yield platform


def options(served: Served, url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "agent_id": "echo-agent",
        "client_id": "key_echo",
        "client_secret": SECRET,
        "base_url": url,
        "max_retries": 0,
    }
    values.update(overrides)
    return served.options(**values)


def tokens_seen(proxy: PlatformProxy) -> set[str]:
    """Every bearer token that went through the proxy (minted by the platform)."""
    return {
        e.headers["authorization"].split(" ", 1)[1]
        for e in proxy.exchanges
        if e.headers.get("authorization", "").startswith("Bearer ")
    }


def leaks(texts: list[str], secrets: set[str]) -> list[str]:
    return [text for text in texts if any(secret in text for secret in secrets)]


def all_log_text(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() + (r.exc_text or "") for r in caplog.records]


def echo_on(*paths: str) -> Any:
    def rewrite(exchange: Exchange) -> Any:
        return echo_request(exchange) if exchange.path in paths else None

    return rewrite


def test_an_echoed_token_request_leaks_no_client_secret(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with PlatformProxy(served.url, echo_on("/v1/oauth/token")) as proxy:
        with TracengentClient(options(served, proxy.url)) as client:
            decision = client.authorize("payments:refund", {"amount": 1})
            with pytest.raises(NotAuthorizedException) as refused:
                client.ensure_authorized("payments:refund", {"amount": 1})
    assert proxy.exchanges, "the proxy saw the token request"
    assert not decision.allowed
    texts = [decision.reason, str(refused.value), refused.value.reason, *all_log_text(caplog)]
    assert leaks(texts, {SECRET}) == []


@pytest.mark.parametrize("mode", ["client-credentials", "ingest-key"])
def test_an_echoed_governance_request_leaks_no_token_or_key(
    served: Served, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    paths = ("/v1/authorize", "/v1/tool-authorize", "/v1/ingest/events")
    overrides: dict[str, Any] = (
        {} if mode == "client-credentials" else {"client_id": None, "client_secret": None}
    )
    overrides["ingest_key"] = INGEST
    with PlatformProxy(served.url, echo_on(*paths)) as proxy, ToolServer() as tool:
        with TracengentClient(options(served, proxy.url, **overrides)) as client:
            decision = client.authorize("payments:refund", {"amount": 1})
            with pytest.raises(ToolDeniedException) as denied:
                client.tools.guard_function("transfer", {"amount": 1}, print)
            client.record(AgentEvent(name="charge"))
            client.flush(5)
        secrets = {SECRET, INGEST} | tokens_seen(proxy)
    texts = [decision.reason, str(denied.value), *all_log_text(caplog)]
    assert len(proxy.exchanges) >= 3
    assert leaks(texts, secrets) == [], leaks(texts, secrets)
    assert tool.received == []


async def test_async_echoed_answers_leak_nothing(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with PlatformProxy(served.url, echo_on("/v1/authorize", "/v1/oauth/token")) as proxy:
        async with AsyncTracengentClient(options(served, proxy.url)) as client:
            decision = await client.authorize("payments:refund", {"amount": 1})
    texts = [decision.reason, *all_log_text(caplog)]
    assert leaks(texts, {SECRET} | tokens_seen(proxy)) == []


def test_a_reason_that_quotes_the_request_is_scrubbed(served: Served) -> None:
    """A platform (or proxy) whose deny reason repeats the bearer token it was sent."""

    def quoting(exchange: Exchange) -> Any:
        if exchange.path != "/v1/authorize":
            return None
        said = f"denied for {exchange.headers.get('authorization')} / secret {SECRET}"
        body = httpx.Response(200, json={"allowed": False, "status": "denied", "reason": said})
        return 200, {"content-type": "application/json"}, body.content

    with PlatformProxy(served.url, quoting) as proxy:
        with TracengentClient(options(served, proxy.url)) as client:
            decision = client.authorize("payments:refund", {"amount": 1})
    assert decision.reason.startswith("denied for Bearer ***")
    assert leaks([decision.reason], {SECRET} | tokens_seen(proxy)) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", "Bearer tok_live_0123456789abcdef\n"),
        ("X-Api-Key", "vendorkey0123456789\r\n"),
        ("Cookie", "session=abcdef0123456789\n"),
    ],
)
def test_a_malformed_agent_credential_is_not_stored_in_its_event(
    served: Served, name: str, value: str
) -> None:
    secret = value.strip().split(" ")[-1].split("=")[-1]
    with ToolServer() as tool, TracengentClient(options(served, served.url)) as client:
        with tracked_client(client) as http:
            with client.begin_trace("call a tool") as trace:
                with pytest.raises(httpx.HTTPError):  # the HTTP library refuses the header
                    http.get(tool.url() + "/v1/items", headers={name: value})
        assert client.flush(5)
    store = served.store()
    try:
        events = [e for e in store.events() if e.get("traceId") == trace.trace_id]
    finally:
        store.close()
    errors = [str(e.get("attributes", {}).get("error")) for e in events]
    assert errors and all("Illegal header value" in e or "header" in e.lower() for e in errors)
    assert not [e for e in errors if secret in e], errors
    assert tool.received == []


def test_a_gate_refusal_that_quotes_a_header_quotes_no_credential(served: Served) -> None:
    secret = "ghp_0123456789abcdefghijABCDEFGHIJ"
    with ToolServer() as tool, TracengentClient(options(served, served.url)) as client:
        with governed_client(client) as http:
            with pytest.raises(ToolDeniedException) as refused:
                http.get(tool.url() + "/v1/items", headers={"X-Forwarded-Host": secret})
    assert "X-Forwarded-Host" in refused.value.reason or "x-forwarded-host" in refused.value.reason
    assert secret not in str(refused.value) and secret not in refused.value.reason
    assert tool.received == []
