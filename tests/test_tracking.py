"""tracked_client: every request becomes a tool_call event; URLs keep no secrets."""

from __future__ import annotations

import httpx
import pytest

from tracengent import (
    AsyncTracengentClient,
    TracengentClient,
    TracengentOptions,
    async_tracked_client,
    tracked_client,
)

from ._recording import RecordingPlatform

OPTIONS = {"agent_id": "demo-agent", "ingest_key": "agk_demo"}


def tool(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/broken":
        raise httpx.ConnectError("refused", request=request)
    return httpx.Response(404 if request.url.path == "/missing" else 200, json={"ok": True})


def events(platform: RecordingPlatform) -> list[dict[str, object]]:
    return [e for batch in platform.sent("/v1/ingest/events") for e in batch]


def test_requests_are_recorded_in_the_trace_without_query_values_or_credentials() -> None:
    platform = RecordingPlatform()
    client = TracengentClient(TracengentOptions(**OPTIONS), transport=platform.transport)  # type: ignore[arg-type]
    http = tracked_client(
        client, inner=httpx.MockTransport(tool), base_url="https://bob:hunter2@api.example.com"
    )
    with client.begin_trace("x") as trace:
        assert http.get("/search", params={"q": "secret stuff", "page": 2}).status_code == 200
        http.post("/missing", json={})
        with pytest.raises(httpx.ConnectError):
            http.get("/broken")
    client.close()
    recorded = events(platform)
    assert [e["name"] for e in recorded] == [
        "GET api.example.com/search",
        "POST api.example.com/missing",
        "GET api.example.com/broken",
    ]
    assert [e["status"] for e in recorded] == ["success", "failure", "failure"]
    assert {e["traceId"] for e in recorded} == {trace.trace_id}
    first = recorded[0]["attributes"]
    assert first == {
        "method": "GET",
        "url": "https://api.example.com/search?q&page",
        "statusCode": 200,
    }
    assert recorded[1]["attributes"]["statusCode"] == 404  # type: ignore[index]
    assert "ConnectError" in recorded[2]["attributes"]["error"]  # type: ignore[index]
    text = str(platform.raw("/v1/ingest/events"))
    assert "hunter2" not in text and "secret stuff" not in text and "bob" not in text


async def test_the_async_tracked_client_records_too() -> None:
    platform = RecordingPlatform()
    client = AsyncTracengentClient(TracengentOptions(**OPTIONS), transport=platform.transport)  # type: ignore[arg-type]
    async with client, async_tracked_client(client, inner=httpx.MockTransport(tool)) as http:
        await http.get("https://api.example.com/things")
    assert [e["name"] for e in events(platform)] == ["GET api.example.com/things"]
    assert "traceId" not in events(platform)[0]
