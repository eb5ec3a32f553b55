"""The exact bytes each builder produces for a representative call: method, URL, headers, body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import tracengent_api as api

BASE = "https://platform.test/base/"
EVENT = api.Event(
    event_id="evt_1",
    agent_id="travel-agent",
    trace_id="trc_1",
    type=api.EventType.TOOL_CALL,
    name="search-flights",
    status="success",
    usage=api.Usage(tokens=12, model="gpt"),
    actor=api.Actor(user_id="u_1"),
    input={"from": "LIS", "note": "café", "none": None},
    occurred_at="2026-11-25T13:50:58.123456+00:00",
    duration_ms=41,
    tags=["production", "eu"],
)

CALLS: dict[str, Callable[[], httpx.Request]] = {
    "oauth_token": lambda: api.build_oauth_token(
        api.TokenRequest(
            grant_type="client_credentials", client_id="key_demo", client_secret="ags_demo"
        ),
        base_url=BASE,
    ),
    "ingest_events": lambda: api.build_ingest_events(
        [EVENT, EVENT], base_url=BASE, ingest_key="agk_demo"
    ),
    "ingest_events_gzip": lambda: api.build_ingest_events(
        b"<gzipped bytes>", base_url=BASE, bearer_token="tok", content_encoding="gzip"
    ),
    "ingest_traces": lambda: api.build_ingest_traces(
        api.TraceClose(
            trace_id="trc_1",
            agent_id="travel-agent",
            root_request="book a trip",
            op=api.TraceOp.CLOSE,
            status=api.TraceStatus.FAILED,
            occurred_at="2026-11-25T13:50:59+00:00",
            summary="card declined",
        ),
        base_url=BASE,
        bearer_token="tok",
    ),
    "authorize": lambda: api.build_authorize(
        api.AuthorizeRequest(
            permission="llm:call",
            context=api.AuthorizeContext(estimated_tokens=1000, model="gpt", purpose="summary"),
            trace_id="trc_1",
        ),
        base_url=BASE,
        bearer_token="tok",
    ),
    "get_approval": lambda: api.build_get_approval("apr/1 x", base_url=BASE, bearer_token="tok"),
    "release_approval": lambda: api.build_release_approval(
        "apr/1 x", base_url=BASE, bearer_token="tok"
    ),
    "tool_authorize": lambda: api.build_tool_authorize(
        api.ToolAuthorizeRequest(
            transport=api.Transport.HTTP,
            method="GET",
            host="api.example.com",
            path="/v1/things",
            query={"q": "x"},
            headers={"accept": "application/json"},
            trace_id="trc_1",
        ),
        base_url=BASE,
        bearer_token="tok",
        headers={"User-Agent": "tracengent-tests"},
    ),
    "attenuate": lambda: api.build_attenuate(
        "dlg_1",
        api.AttenuateRequest(
            granted_to_agent_id="agt_hotel",
            permissions=["hotels:book"],
            max_amount=500.5,
            expires_in_seconds=300,
            reason="book the hotel",
        ),
        base_url=BASE,
        bearer_token="delegated",
    ),
}


def render(request: httpx.Request) -> bytes:
    head = [f"{request.method} {request.url}"]
    head += [f"{name}: {value}" for name, value in sorted(request.headers.items())]
    return ("\n".join(head) + "\n\n").encode() + request.content


def test_every_builder_has_a_representative_call() -> None:
    builders = {name.removeprefix("build_") for name in dir(api) if name.startswith("build_")}
    assert builders <= CALLS.keys()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_request_bytes(name: str, http_snapshot: Any) -> None:
    assert render(CALLS[name]()) == http_snapshot


def test_bytes_from_encode_are_sent_unchanged() -> None:
    encoded = api.encode_ingest_events([EVENT])
    request = api.build_ingest_events(encoded, base_url=BASE, ingest_key="k")
    assert request.content is encoded or request.content == encoded
    assert api.build_ingest_events([EVENT], base_url=BASE, ingest_key="k").content == encoded
