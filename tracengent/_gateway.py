"""The egress gate: every HTTP request a governed client sends is authorized first.

A denied request raises `ToolDeniedException` and never leaves the process; a held one raises
`ToolPendingApprovalException`; an allowed one is forwarded with the decision's redactions
applied to its JSON body. The gate sits in the transport, so each redirect hop httpx follows
is authorized again: a redirect cannot carry a request to a host the policy refuses.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import tracengent_api as api

from ._events import AgentEvent, EventStatuses, EventTypes
from ._logs import logger
from ._redaction import apply_redactions
from ._tools import ToolDecision, raise_unless_allowed, redactions_for, tool_authorize_flow
from ._tracking import record_in_trace, safe_url

if TYPE_CHECKING:
    from ._async_client import AsyncTracengentClient
    from ._client import TracengentClient
    from ._core import ClientCore

_NEVER_SENT = frozenset({"authorization", "proxy-authorization", "cookie"})


def describe(request: httpx.Request) -> tuple[api.ToolAuthorizeRequest, str | None]:
    """What the platform is asked about `request`, and its body text when that is JSON."""
    content = request.read()
    text: str | None = None
    body: Any = None
    if content and "json" in request.headers.get("content-type", "").lower():
        try:
            text = content.decode("utf-8")
            body = json.loads(text)
        except ValueError:  # not JSON after all: the platform sees no body, nothing is redacted
            text, body = None, None
    query = {name: value for name, value in request.url.params.multi_items()}
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in _NEVER_SENT
    }
    asked = api.ToolAuthorizeRequest(
        transport=api.Transport.HTTP,
        method=request.method,
        host=request.url.host,
        path=request.url.path,
        query=query or None,
        headers=headers or None,
        body=body,
    )
    return asked, text


def forwardable(
    request: httpx.Request, decision: ToolDecision, text: str | None, core: ClientCore
) -> httpx.Request:
    """The request to send: raises unless allowed; redacted when the decision says so."""
    if decision.ungoverned:
        _note_ungoverned(request, decision, core)
    raise_unless_allowed(decision)
    rules = redactions_for(decision)
    if not rules or text is None:
        return request
    redacted = apply_redactions(text, rules)
    if redacted == text:
        return request
    headers = httpx.Headers(request.headers)
    headers.pop("content-length", None)  # recomputed from the new body
    return httpx.Request(
        request.method,
        request.url,
        headers=headers,
        content=redacted.encode(),
        extensions=request.extensions,
    )


def _note_ungoverned(request: httpx.Request, decision: ToolDecision, core: ClientCore) -> None:
    logger.warning(
        "Tracengent: %s %s%s went out ungoverned (tool_governance_fail_open): %s",
        request.method,
        request.url.host,
        request.url.path,
        decision.reason,
    )
    event = AgentEvent(
        type=EventTypes.ERROR,
        name=f"ungoverned {request.method} {request.url.host}{request.url.path}",
        status=EventStatuses.FAILURE,
        attributes={
            "method": request.method,
            "url": safe_url(request.url),
            "reason": decision.reason,
        },
    )
    record_in_trace(core, event)


class GatewayTransport(httpx.BaseTransport):
    """Governs every request before handing it to `inner` (default: `httpx.HTTPTransport`)."""

    def __init__(self, client: TracengentClient, inner: httpx.BaseTransport | None = None) -> None:
        self._client = client
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = self._client._core
        asked, text = describe(request)
        decision = self._client._run(
            tool_authorize_flow(core, asked, fail_open=core.options.tool_governance_fail_open)
        )
        return self._inner.handle_request(forwardable(request, decision, text, core))

    def close(self) -> None:
        self._inner.close()


class AsyncGatewayTransport(httpx.AsyncBaseTransport):
    """The async twin of `GatewayTransport`."""

    def __init__(
        self, client: AsyncTracengentClient, inner: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = client
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = self._client._core
        await request.aread()
        asked, text = describe(request)
        decision = await self._client._run(
            tool_authorize_flow(core, asked, fail_open=core.options.tool_governance_fail_open)
        )
        return await self._inner.handle_async_request(forwardable(request, decision, text, core))

    async def aclose(self) -> None:
        await self._inner.aclose()


def governed_client(
    client: TracengentClient, *, inner: httpx.BaseTransport | None = None, **httpx_kwargs: Any
) -> httpx.Client:
    """An `httpx.Client` whose every request (and redirect hop) is authorized first."""
    return httpx.Client(transport=GatewayTransport(client, inner), **httpx_kwargs)


def async_governed_client(
    client: AsyncTracengentClient,
    *,
    inner: httpx.AsyncBaseTransport | None = None,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request (and redirect hop) is authorized first."""
    return httpx.AsyncClient(transport=AsyncGatewayTransport(client, inner), **httpx_kwargs)
