"""Auto-tracking: every request through a tracked client becomes a `tool_call` event.

The recorded URL keeps the query's parameter names but never their values, and never a
user:password, because URLs carry API keys and personal data more often than not.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

from ._events import AgentEvent, EventStatuses, EventTypes
from ._trace import current_trace


class _Recorder(Protocol):
    def record(self, event: AgentEvent) -> None: ...


def safe_url(url: httpx.URL) -> str:
    """`url` without credentials or query values: `https://host/path?q&page`."""
    names = "&".join(dict.fromkeys(name for name, _ in url.params.multi_items()))
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}" + (f"?{names}" if names else "")


def tool_call_event(
    request: httpx.Request, status_code: int | None, error: BaseException | None, started: float
) -> AgentEvent:
    failed = error is not None or status_code is None or status_code >= 400
    attributes: dict[str, Any] = {"method": request.method, "url": safe_url(request.url)}
    if status_code is not None:
        attributes["statusCode"] = status_code
    if error is not None:
        attributes["error"] = f"{type(error).__name__}: {error}"
    return AgentEvent(
        type=EventTypes.TOOL_CALL,
        name=f"{request.method} {request.url.host}{request.url.path}",
        status=EventStatuses.FAILURE if failed else EventStatuses.SUCCESS,
        attributes=attributes,
        duration_ms=int((time.perf_counter() - started) * 1000),
    )


def record_in_trace(client: _Recorder, event: AgentEvent) -> None:
    """Into the current trace when there is one (parent chain, trace id), else as a plain event."""
    trace = current_trace()
    if trace is not None:
        trace.record(event)
    else:
        client.record(event)


class TrackingTransport(httpx.BaseTransport):
    """Records each request sent through `inner` (default: a plain `httpx.HTTPTransport`)."""

    def __init__(self, client: _Recorder, inner: httpx.BaseTransport | None = None) -> None:
        self._client = client
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except Exception as error:
            record_in_trace(self._client, tool_call_event(request, None, error, started))
            raise
        record_in_trace(self._client, tool_call_event(request, response.status_code, None, started))
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncTrackingTransport(httpx.AsyncBaseTransport):
    """The async twin of `TrackingTransport`."""

    def __init__(self, client: _Recorder, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = client
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as error:
            record_in_trace(self._client, tool_call_event(request, None, error, started))
            raise
        record_in_trace(self._client, tool_call_event(request, response.status_code, None, started))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def tracked_client(
    client: _Recorder, *, inner: httpx.BaseTransport | None = None, **httpx_kwargs: Any
) -> httpx.Client:
    """An `httpx.Client` whose every request is recorded as a `tool_call` event."""
    return httpx.Client(transport=TrackingTransport(client, inner), **httpx_kwargs)


def async_tracked_client(
    client: _Recorder, *, inner: httpx.AsyncBaseTransport | None = None, **httpx_kwargs: Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request is recorded as a `tool_call` event."""
    return httpx.AsyncClient(transport=AsyncTrackingTransport(client, inner), **httpx_kwargs)
