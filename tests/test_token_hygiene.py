"""A secret never leaves its place, also when the token endpoint misbehaves (issue 11, principle 3).

Two ways a token endpoint (or a proxy in front of it) put secrets into texts the agent sees:

- an access token with a trailing newline (or other whitespace, control or non-ASCII
  characters, or none at all) was cached and put in the `Authorization` header, where the HTTP
  library refused it and quoted the value in its error: the token ended up in the decision
  reason, in `NotAuthorizedException` and in a warning. It is refused when it is received, with
  an error that says what is wrong without quoting it, and nothing is sent with it;
- an error page that echoes the request (the form body `client_secret=ags_…`) was quoted in the
  `ApiError` the token provider raised (message and `body`), and from there in reasons and logs.
  The token provider now writes its own errors, naming the status and at most the OAuth error
  code.

Everything runs over real HTTP against a raw-socket token endpoint on 127.0.0.1. The assertions
on `get_token()`'s error are on text no scrubber sees, so they test that the text is built
without secrets; those on reasons, exceptions and log records hold the whole SDK to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import tracengent_api as api

from tests._loopback import JWT, LoopbackServer, Reply, answer
from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    NotAuthorizedException,
    ToolDeniedException,
    TracengentClient,
    TracengentOptions,
)

SECRET = "ags_s3cr3t-Zq8wLk2Pm4Xv"  # what a real client secret looks like
ALLOW = {"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_1"}

#: Tokens that cannot be a header value, by what is wrong with them.
MALFORMED = {
    "trailing_newline": JWT + "\n",
    "trailing_crlf": JWT + "\r\n",
    "inner_space": JWT[:20] + " " + JWT[20:],
    "tab": JWT + "\t",
    "nul": JWT[:10] + "\x00" + JWT[10:],
    "non_ascii": JWT + "é",
    "empty": "",
}


def options(url: str, **overrides: Any) -> TracengentOptions:
    values: dict[str, Any] = {
        "agent_id": "demo-agent",
        "base_url": url,
        "client_id": "key_demo",
        "client_secret": SECRET,
        "authorize_timeout_s": 2.0,
        "request_timeout_s": 2.0,
        "flush_interval_ms": 50,
        "max_retries": 1,
        "backoff_base_s": 0.05,
    }
    values.update(overrides)
    return TracengentOptions(**values)


def token_endpoint(reply: Reply) -> LoopbackServer:
    """A platform whose token endpoint answers `reply` and whose other endpoints allow."""

    def route(path: str, _body: bytes) -> Reply:
        if path == "/v1/oauth/token":
            return reply
        if path == "/v1/ingest/events":
            return answer(200, {"accepted": 1})
        return answer(200, ALLOW)

    return LoopbackServer(route, lifetime=20.0)


def echoing(status: int, shape: str) -> LoopbackServer:
    """A token endpoint whose error page echoes the request body (with the client secret)."""

    def route(path: str, body: bytes) -> Reply:
        if path != "/v1/oauth/token":
            return answer(200, ALLOW)
        echoed = body.decode()
        page: str | dict[str, object] = {
            "text": f"<html>bad request: {echoed}</html>",
            "json_reason": {"reason": f"could not parse {echoed}"},
            "oauth": {"error": "invalid_request", "error_description": f"got {echoed}"},
        }[shape]
        return answer(status, page)

    return LoopbackServer(route, lifetime=20.0)


def spellings(secret: str) -> Iterator[str]:
    """Every way `secret` could appear in a text: raw, stripped, escaped, quoted."""
    for value in {secret, secret.strip()}:
        if len(value) >= 4:
            yield value
            yield repr(value)[1:-1]
            yield json.dumps(value)[1:-1]


def assert_absent(secret: str, *texts: object) -> None:
    for text in texts:
        for form in spellings(secret):
            assert form not in str(text), f"{form!r} found in {text!r}"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    ]


# --- a malformed access token is refused when it is received ---------------------------------


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_token_is_refused_without_quoting_it(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = MALFORMED[kind]
    issued = {"access_token": token, "token_type": "Bearer", "expires_in": 900}
    with token_endpoint(answer(200, issued)) as platform:
        with TracengentClient(options(platform.url)) as client:
            assert client.token_provider is not None
            with pytest.raises(api.ApiDecodeError) as fetched:
                client.token_provider.get_token()
            decision = client.authorize("flights:book")
            with pytest.raises(NotAuthorizedException) as refused:
                client.ensure_authorized("flights:book")
            with pytest.raises(ToolDeniedException) as denied:
                client.tools.guard_function("refund", {"amount": 1}, lambda args: args)
            client.record(AgentEvent(name="booked"))
            client.flush(5)
        asked = platform.paths()
    assert "malformed access token" in str(fetched.value), fetched.value
    assert fetched.value.body == ""
    assert decision.allowed is False and "malformed access token" in decision.reason, decision
    assert set(asked) == {"/v1/oauth/token"}, asked  # nothing was sent with it
    if token:
        assert_absent(token, fetched.value, fetched.value.args, decision.reason)
        assert_absent(token, refused.value, denied.value, *logged(caplog))
    assert not any("Illegal header value" in line for line in logged(caplog))


def test_the_async_client_refuses_a_malformed_token_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = MALFORMED["trailing_newline"]
    issued = {"access_token": token, "token_type": "Bearer", "expires_in": 900}

    async def ask(url: str) -> tuple[Any, BaseException]:
        async with AsyncTracengentClient(options(url)) as client:
            decision = await client.authorize("flights:book")
            try:
                await client.ensure_authorized("flights:book")
            except NotAuthorizedException as error:
                return decision, error
        raise AssertionError("ensure_authorized allowed without a usable token")

    with token_endpoint(answer(200, issued)) as platform:
        decision, refused = asyncio.run(ask(platform.url))
        asked = platform.paths()
    assert decision.allowed is False and "malformed access token" in decision.reason
    assert set(asked) == {"/v1/oauth/token"}, asked
    assert_absent(token, decision.reason, refused, *logged(caplog))


def test_a_well_formed_token_is_still_used() -> None:
    issued = {"access_token": JWT, "token_type": "Bearer", "expires_in": 900}
    with token_endpoint(answer(200, issued)) as platform:
        with TracengentClient(options(platform.url)) as client:
            decision = client.authorize("flights:book")
        sent = [seen.headers for seen in platform.seen if seen.path == "/v1/authorize"]
    assert decision.allowed is True, decision
    assert sent and f"Bearer {JWT}".encode() in sent[0]


# --- an error page that echoes the request does not carry the client secret on ----------------


@pytest.mark.parametrize(
    ("status", "shape"),
    [(500, "text"), (503, "json_reason"), (400, "oauth"), (400, "text"), (200, "text")],
)
def test_an_echoing_token_endpoint_leaks_no_secret(
    status: int, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with echoing(status, shape) as platform:
        with TracengentClient(options(platform.url)) as client:
            assert client.token_provider is not None
            with pytest.raises(api.ApiError) as fetched:
                client.token_provider.get_token()
            decision = client.authorize("flights:book")
            with pytest.raises(NotAuthorizedException) as refused:
                client.ensure_authorized("flights:book")
            client.record(AgentEvent(name="booked"))  # the sender retries, and logs why
            client.flush(3)
        echoed = [seen for seen in platform.seen if SECRET.encode() in seen.body]
    assert echoed, "the token endpoint was not asked with the secret: the test proves nothing"
    error = fetched.value
    # built by the token provider: no scrubber between it and the caller
    assert_absent(SECRET, error, error.args, error.body, repr(error))
    assert "ags_" not in str(error) and "client_secret" not in str(error), error
    assert f"answered {status}" in str(error)
    if shape == "oauth":
        assert "(invalid_request)" in str(error)  # the OAuth error code is kept: it is safe
    assert decision.allowed is False
    # what reaches the agent and the logs (the scrubber would also catch these)
    assert_absent(SECRET, decision.reason, refused.value, *logged(caplog))
    assert not any("ags_" in text for text in [decision.reason, str(refused.value)])
    assert not any("ags_" in line for line in logged(caplog)), logged(caplog)


def test_an_echoing_401_turns_the_provider_off_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with echoing(401, "text") as platform:
        with TracengentClient(options(platform.url)) as client:
            assert client.token_provider is not None
            assert client.token_provider.get_token() is None
            decision = client.authorize("flights:book")
    assert client.token_provider.disabled
    assert decision.allowed is False
    assert_absent(SECRET, decision.reason, *logged(caplog))
    assert any("refused client_id 'key_demo'" in line for line in logged(caplog))


# --- the HTTP stack's own log records ----------------------------------------------------------


def test_a_response_header_echoing_the_token_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    def route(path: str, body: bytes) -> Reply:
        if path == "/v1/oauth/token":
            return answer(200, {"access_token": JWT, "token_type": "Bearer", "expires_in": 900})
        return answer(200, ALLOW, headers={"X-Echo-Authorization": f"Bearer {JWT}"})

    with LoopbackServer(route, lifetime=20.0) as platform:
        with TracengentClient(options(platform.url)) as client:
            decision = client.authorize("flights:book")
    assert decision.allowed is True
    assert_absent(JWT, *logged(caplog))
