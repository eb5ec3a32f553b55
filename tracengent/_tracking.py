"""Auto-tracking: every request through a tracked client becomes a `tool_call` event.

The recorded URL keeps the query's parameter names but never their values, and never a
user:password, because URLs carry API keys and personal data more often than not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import httpx

from ._context import ambient_trace
from ._credentials import is_credential_header
from ._events import AgentEvent, EventStatuses, EventTypes
from ._scrub import Scrubber
from ._wire import STATUS_CODE

_Scrub = Callable[[object, Iterable[str]], str]
_ANONYMOUS = Scrubber()  # for a recorder that is no client: credential shapes only


class _Recorder(Protocol):
    def record(self, event: AgentEvent) -> None: ...


def safe_url(url: httpx.URL) -> str:
    """`url` without credentials or query values: `https://host/path?q&page`."""
    names = "&".join(dict.fromkeys(name for name, _ in url.params.multi_items()))
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}" + (f"?{names}" if names else "")


def credentials_of(request: httpx.Request) -> list[str]:
    """The credentials `request` carries (header values by the `_credentials` rule, the URL's
    password): what no text about the request may repeat, even when a library quotes it."""
    found = [value for name, value in request.headers.items() if is_credential_header(name, value)]
    if request.url.password:
        found.append(request.url.password)
    return found


def scrubber_of(client: object) -> _Scrub:
    """The client's scrubber (it knows the client's own secrets), or one that knows none."""
    scrubber = getattr(getattr(client, "_core", None), "scrubber", None)
    return scrubber.text if isinstance(scrubber, Scrubber) else _ANONYMOUS.text


def tool_call_event(
    request: httpx.Request,
    status_code: int | None,
    error: BaseException | None,
    started: float,
    scrub: _Scrub | None = None,
) -> AgentEvent:
    failed = error is not None or status_code is None or status_code >= 400
    attributes: dict[str, Any] = {"method": request.method, "url": safe_url(request.url)}
    if status_code is not None:
        attributes[STATUS_CODE] = status_code
    if error is not None:  # an HTTP library's message may quote a (malformed) credential header
        attributes["error"] = (scrub or _ANONYMOUS.text)(
            f"{type(error).__name__}: {error}", credentials_of(request)
        )
    return AgentEvent(
        type=EventTypes.TOOL_CALL,
        name=f"{request.method} {request.url.host}{request.url.path}",
        status=EventStatuses.FAILURE if failed else EventStatuses.SUCCESS,
        attributes=attributes,
        duration_ms=int((time.perf_counter() - started) * 1000),
    )


def record_in_trace(client: _Recorder, event: AgentEvent) -> None:
    """Into the current trace when there is one (parent chain, trace id), else as a plain event."""
    trace = ambient_trace()
    if trace is not None:
        trace.record(event)
    else:
        client.record(event)


class _Tracking:
    """What both tracking transports do around the inner transport's exchange: record it."""

    def __init__(self, client: _Recorder) -> None:
        self._client = client
        self._scrub = scrubber_of(client)

    def _record(
        self,
        request: httpx.Request,
        started: float,
        response: httpx.Response | None,
        error: BaseException | None = None,
    ) -> None:
        status = None if response is None else response.status_code
        record_in_trace(self._client, tool_call_event(request, status, error, started, self._scrub))


class TrackingTransport(_Tracking, httpx.BaseTransport):
    """Records each request sent through `inner` (default: a plain `httpx.HTTPTransport`)."""

    def __init__(self, client: _Recorder, inner: httpx.BaseTransport | None = None) -> None:
        super().__init__(client)
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except Exception as error:
            self._record(request, started, None, error)
            raise
        self._record(request, started, response)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncTrackingTransport(_Tracking, httpx.AsyncBaseTransport):
    """The async twin of `TrackingTransport`."""

    def __init__(self, client: _Recorder, inner: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(client)
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as error:
            self._record(request, started, None, error)
            raise
        self._record(request, started, response)
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
