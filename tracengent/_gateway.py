"""The egress gate: every HTTP request a governed client sends is authorized first, and what
leaves is exactly what was decided.

A denied request raises `ToolDeniedException` and never leaves the process; a held one raises
`ToolPendingApprovalException`; an allowed one is forwarded with the decision's redactions
applied to its body (and query). The gate sits in the transport, so each redirect hop httpx
follows is authorized again: a redirect cannot carry a request to a host the policy refuses.

What the platform is told is what is sent: the host and raw path of the URL the connection goes
to, its query, its headers (never a credential: `tracengent._credentials`), its body as read by
`tracengent._http_body`. A request that would be sent somewhere other than it says is refused
before anyone is asked: a ``Host`` header (or ``X-Forwarded-Host``, ``Forwarded: host=``, a
method or URL override header, a ``_method`` field) that disagrees with the URL or method, an
``sni_hostname`` or ``target`` extension that differs, framing headers that disagree with the
body, an extension the gate does not know. On a *bound* endpoint (the decision names a
permission or redactions), a body or query the gate could not read is refused too (its amount
could not be checked nor its fields redacted), and so is a parameter given both in the query and
in the body (servers differ on which one counts).

`describe` and `forwardable` are the pure core; the two transports only read the body (the one
place sync and async differ) and call them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import httpx
import tracengent_api as api

from ._credentials import is_credential_header
from ._enforcement import Enforcement, enforced, let_through
from ._errors import ToolDeniedException, ToolPendingApprovalException
from ._events import AgentEvent, EventStatuses, EventTypes
from ._form import FormError, Tree, encode_form, parse_form, redact_form
from ._http_body import MAX_BODY_BYTES, Body, read_body, redacted_bytes
from ._logs import logger
from ._redaction import Redaction
from ._tools import (
    ToolDecision,
    decided,
    raise_unless_allowed,
    redactions_for,
    tool_authorize_flow,
)
from ._tracking import record_in_trace, safe_url

if TYPE_CHECKING:
    from ._flow import Flow
    from ._runtime import RecordingContext


class _SyncClient(Protocol):
    """What the sync gate uses of a `TracengentClient`: its flow context and its driver."""

    @property
    def _core(self) -> RecordingContext: ...

    def _run(self, flow: Flow[T]) -> T: ...


class _AsyncClient(Protocol):
    """What the async gate uses of an `AsyncTracengentClient`."""

    @property
    def _core(self) -> RecordingContext: ...

    async def _run(self, flow: Flow[T]) -> T: ...


#: Request extensions that do not change where a request goes or what it carries.
_HARMLESS_EXTENSIONS: Final = frozenset({"timeout", "trace"})
#: Headers some servers or proxies take as the request's real method, URL or host.
_METHOD_OVERRIDES: Final = ("x-http-method-override", "x-http-method", "x-method-override")
_URL_OVERRIDES: Final = ("x-original-url", "x-rewrite-url")
_HOST_OVERRIDES: Final = ("x-forwarded-host", "x-host", "x-forwarded-server")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_FORWARDED_HOST: Final = re.compile(r'(?i)(?:^|[;,\s])host\s*=\s*"?([^;,"\s]*)')


@dataclass(frozen=True)
class Outgoing:
    """A request as the gate read it: what the platform is asked, and what may be forwarded."""

    request: httpx.Request
    asked: api.ToolAuthorizeRequest
    body: Body
    #: the query as a form tree, or why it cannot be read (None, None: no query)
    query: Tree | None
    query_problem: str | None
    #: why the request is refused before anyone is asked (it would go elsewhere than it says)
    refusal: str | None

    @property
    def subject(self) -> str:
        return f"{self.asked.method} {self.asked.host}"


def describe(request: httpx.Request, content: bytes | None) -> Outgoing:
    """Read `request` (its body is `content`; None when over the size cap) for the platform."""
    headers = request.headers
    types = headers.get_list("content-type")
    if len(types) > 1:  # servers take the first, the last, or refuse: which one is unknown
        body = Body(", ".join(types)[:80].lower(), problem="it has more than one Content-Type")
    else:
        body = read_body(content, "".join(types), headers.get("content-encoding", ""))
    raw_query = request.url.query.decode("ascii", "replace")
    query: Tree | None = None
    query_problem: str | None = None
    if raw_query:
        try:
            query = parse_form(raw_query)
        except FormError as error:
            query_problem = str(error)
    raw_path = request.url.raw_path.decode("ascii", "replace").partition("?")[0] or "/"
    params = {
        name: value
        for name, value in request.url.params.multi_items()
        if not is_credential_header(name, value)
    }
    told = {name: value for name, value in headers.items() if not is_credential_header(name, value)}
    asked = api.ToolAuthorizeRequest(
        transport=api.Transport.HTTP,
        method=request.method,
        host=request.url.raw_host.decode("ascii", "replace"),
        path=raw_path,
        query=params or None,
        headers=told or None,
        body=body.view,
    )
    refusal = _misdirection(request, content) or _method_field(request.method, body, query)
    return Outgoing(request, asked, body, query, query_problem, refusal)


def forwardable(
    outgoing: Outgoing, decision: ToolDecision, core: RecordingContext
) -> httpx.Request:
    """The request to send: raises unless allowed and checkable; redacted as the decision says."""
    request = outgoing.request
    if decision.ungoverned:
        _note_ungoverned(request, decision, core)
    problem = _unchecked(outgoing)
    if problem is not None and decision.permission and decision.status == "denied":
        # The platform decided without what the gate could not read; say so.
        decision = dataclasses.replace(decision, reason=f"{decision.reason} ({problem})")
    raise_unless_allowed(decision)
    rules = redactions_for(decision)
    if decision.permission is None and not rules:
        return request  # allowed by the egress allowlist alone: nothing in it to check
    if problem is not None:
        bound = (
            f"the call bound to '{decision.permission}'"
            if decision.permission
            else "the call whose redactions apply"
        )
        raise _denied(core, outgoing, f"{problem}, so {bound} cannot be checked", decision)
    content = redacted_bytes(outgoing.body, rules)
    url = _redacted_url(request.url, outgoing.query, rules)
    if content is None and url is None:
        return request
    if content is None:
        content = request.content
    headers = httpx.Headers(request.headers)
    headers.pop("transfer-encoding", None)
    headers.pop("content-length", None)
    if content or request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        headers["Content-Length"] = str(len(content))
    return httpx.Request(
        request.method,
        url or request.url,
        headers=headers,
        content=content,
        extensions=request.extensions,
    )


def gate_flow(
    core: RecordingContext, outgoing: Outgoing, enforcement: Enforcement | None
) -> Flow[httpx.Request]:
    """The one logic of both transports: refuse what would go elsewhere, ask, and give the
    request to send; in shadow mode, the original request, what would have been refused or
    rewritten recorded instead (see `_enforcement`)."""
    fail_open = core.options.tool_governance_fail_open
    if enforced(core, enforcement):  # a bad mode is refused before anything is asked
        refuse(core, outgoing)
        decision = yield from tool_authorize_flow(core, outgoing.asked, fail_open=fail_open)
        return forwardable(outgoing, decision, core)
    if outgoing.refusal is not None:
        refused = decided(core, outgoing.subject, ToolDecision.deny(outgoing.refusal))
        let_through(core, "tool", outgoing.subject, refused, "deny")
        return outgoing.request
    decision = yield from tool_authorize_flow(core, outgoing.asked, fail_open=fail_open)
    try:
        sent = forwardable(outgoing, decision, core)
    except ToolPendingApprovalException:
        let_through(core, "tool", outgoing.subject, decision, "hold")
    except ToolDeniedException as denied:
        refused = dataclasses.replace(
            decision, allowed=False, status="denied", reason=denied.reason
        )
        let_through(core, "tool", outgoing.subject, refused, "deny")
    else:
        if sent is not outgoing.request:
            let_through(core, "tool", outgoing.subject, decision, "redact")
    return outgoing.request


def refuse(core: RecordingContext, outgoing: Outgoing) -> None:
    """Raise when the request would go elsewhere than it says (before the platform is asked)."""
    if outgoing.refusal is not None:
        raise _denied(core, outgoing, outgoing.refusal, None)


def _denied(
    core: RecordingContext, outgoing: Outgoing, reason: str, decision: ToolDecision | None
) -> ToolDeniedException:
    denial = ToolDecision.deny(reason)
    if decision is not None:
        denial.permission, denial.decision_id = decision.permission, decision.decision_id
    denial = decided(core, outgoing.subject, denial)  # a reason may quote a header: scrubbed
    return ToolDeniedException(denial.reason, denial.permission, denial.outcome)


# --- what makes a request go elsewhere than it says -------------------------------------------


def _misdirection(request: httpx.Request, content: bytes | None) -> str | None:
    url, headers = request.url, request.headers
    expected = url.netloc.decode("ascii", "replace").lower()
    default_port = _DEFAULT_PORTS.get(url.scheme)
    accepted = {expected}
    if url.port is None and default_port is not None:
        accepted.add(f"{expected}:{default_port}")
    hosts = headers.get_list("host")
    if len(hosts) != 1 or hosts[0].strip().lower() not in accepted:
        sent = ", ".join(repr(h[:80]) for h in hosts) or "none"
        return f"the Host header ({sent}) is not the URL's host {expected!r}"
    for name in _HOST_OVERRIDES:
        for value in headers.get_list(name):
            if value.strip().lower() not in accepted:
                return f"the {name} header ({value[:80]!r}) is not the URL's host {expected!r}"
    for name in _METHOD_OVERRIDES:
        for value in headers.get_list(name):
            if value.strip().upper() != request.method:
                return f"the {name} header ({value[:20]!r}) asks for another method than {request.method}"
    for value in headers.get_list("forwarded"):
        for host in _FORWARDED_HOST.findall(value):
            if host.lower() not in accepted:
                return f"the Forwarded header names the host {host[:80]!r}, not {expected!r}"
    for name in _URL_OVERRIDES:
        if headers.get_list(name):
            return f"the {name} header would make the server act on another URL"
    return _extension_problem(request) or _framing_problem(request, content)


def _extension_problem(request: httpx.Request) -> str | None:
    for name, value in request.extensions.items():
        if name in _HARMLESS_EXTENSIONS:
            continue
        if name == "sni_hostname":
            sni = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if sni.lower() != request.url.raw_host.decode("ascii", "replace").lower():
                return f"the sni_hostname extension ({sni[:80]!r}) is not the URL's host"
            continue
        if name == "target":
            if value != request.url.raw_path:
                return "the target extension sends another path than the URL's"
            continue
        return (
            f"the request extension {name[:40]!r} is not one the gate knows, so it cannot tell "
            "where it sends the request"
        )
    return None


def _framing_problem(request: httpx.Request, content: bytes | None) -> str | None:
    lengths = request.headers.get_list("content-length")
    codings = [c.strip().lower() for c in request.headers.get_list("transfer-encoding")]
    if codings and (codings != ["chunked"] or lengths):
        return "the request's Transfer-Encoding and Content-Length headers disagree"
    if len(lengths) > 1 or (lengths and not lengths[0].strip().isdigit()):
        return "the request has more than one Content-Length, or one that is not a number"
    if lengths and content is not None and int(lengths[0]) != len(content):
        return (
            f"the Content-Length header says {lengths[0].strip()[:20]} bytes, but the body "
            f"has {len(content)}"
        )
    return None


def _method_field(method: str, body: Body, query: Tree | None) -> str | None:
    """`_method` in a form, JSON object or query: Rails, Laravel, Symfony act on that method."""
    for where, tree in (("body", body.view), ("query", query)):
        if isinstance(tree, dict):
            for key, value in tree.items():
                if key.casefold() == "_method" and str(value).strip().upper() != method:
                    return f"the {where}'s _method field asks for another method than {method}"
    return None


# --- what a bound endpoint needs ----------------------------------------------------------------


def _unchecked(outgoing: Outgoing) -> str | None:
    """What in the request cannot be checked against a binding, or None."""
    body = outgoing.body
    if body.problem is not None:
        return f"the request body ({body.what}) cannot be read: {body.problem}"
    if outgoing.query_problem is not None:
        return f"the query cannot be read: {outgoing.query_problem}"
    if outgoing.query is not None:
        both = sorted(k for k in outgoing.query if k.casefold() in body.top_keys)
        if both:
            return (
                f"{both[0][:40]!r} is both in the query and in the body, and servers differ on "
                "which one counts"
            )
    return None


def _redacted_url(url: httpx.URL, query: Tree | None, rules: list[Redaction]) -> httpx.URL | None:
    if query is None or not rules:
        return None
    redacted = redact_form(query, rules)
    return None if redacted is None else url.copy_with(query=encode_form(redacted).encode("ascii"))


def _note_ungoverned(
    request: httpx.Request, decision: ToolDecision, core: RecordingContext
) -> None:
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


# --- reading the body (the only part sync and async do differently) ----------------------------


class _Replay(httpx.SyncByteStream):
    """The chunks already read, then the rest of the stream they came from."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes]) -> None:
        self._head, self._rest = head, rest

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest


class _AsyncReplay(httpx.AsyncByteStream):
    def __init__(self, head: list[bytes], rest: AsyncIterator[bytes]) -> None:
        self._head, self._rest = head, rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            yield chunk
        async for chunk in self._rest:
            yield chunk


def _with_stream(
    request: httpx.Request, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Request:
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        stream=stream,
        extensions=request.extensions,
    )


class _Head:
    """The chunks of a streamed body read so far; full once past `MAX_BODY_BYTES`."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; True when the body is now over the cap (the gate will not read on)."""
        self.chunks.append(chunk)
        self._size += len(chunk)
        return self._size > MAX_BODY_BYTES

    def whole(self, request: httpx.Request) -> tuple[httpx.Request, bytes]:
        """`request` with the whole body read, and the body."""
        content = b"".join(self.chunks)
        return _with_stream(request, httpx.ByteStream(content)), content


def _content(request: httpx.Request) -> bytes | None:
    """The body when it is in memory already (None for a stream not read yet)."""
    try:
        return request.content
    except httpx.RequestNotRead:
        return None


def _read(request: httpx.Request) -> tuple[httpx.Request, bytes | None]:
    """The body, read up to the cap; a streamed body is replayed to whoever sends it on."""
    if (content := _content(request)) is not None:
        return request, content
    head, rest = _Head(), iter(request.stream)  # type: ignore[arg-type]
    for chunk in rest:
        if head.add(chunk):
            return _with_stream(request, _Replay(head.chunks, rest)), None
    read, content = head.whole(request)
    read.read()
    return read, content


async def _aread(request: httpx.Request) -> tuple[httpx.Request, bytes | None]:
    if (content := _content(request)) is not None:
        return request, content
    head, rest = _Head(), aiter(request.stream)  # type: ignore[arg-type]
    async for chunk in rest:
        if head.add(chunk):
            return _with_stream(request, _AsyncReplay(head.chunks, rest)), None
    read, content = head.whole(request)
    await read.aread()
    return read, content


_C = TypeVar("_C")
_I = TypeVar("_I")


class _Gate(Generic[_C, _I]):
    """What both gate transports hold: the client, the transport under the gate (its own
    default when none is given) and the call's `enforcement` override (see `_enforcement`)."""

    def __init__(
        self, client: _C, inner: _I | None = None, *, enforcement: Enforcement | None = None
    ) -> None:
        self._client = client
        self._inner = inner if inner is not None else self._default_inner()
        self._enforcement = enforcement

    def _default_inner(self) -> _I:
        raise NotImplementedError


class GatewayTransport(_Gate[_SyncClient, httpx.BaseTransport], httpx.BaseTransport):
    """Governs every request before handing it to `inner` (default: `httpx.HTTPTransport`).

    Used directly, it must be the client's only transport: `httpx.Client(transport=gate,
    proxy=...)` or `mounts=...` would route requests past it. `governed_client` takes those
    arguments and keeps the gate outermost.
    """

    def _default_inner(self) -> httpx.BaseTransport:
        return httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        flow = gate_flow(self._client._core, describe(*_read(request)), self._enforcement)
        return self._inner.handle_request(self._client._run(flow))

    def close(self) -> None:
        self._inner.close()


class AsyncGatewayTransport(
    _Gate[_AsyncClient, httpx.AsyncBaseTransport], httpx.AsyncBaseTransport
):
    """The async twin of `GatewayTransport`."""

    def _default_inner(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        flow = gate_flow(self._client._core, describe(*await _aread(request)), self._enforcement)
        return await self._inner.handle_async_request(await self._client._run(flow))

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- building governed clients: the gate stays outermost whatever httpx is told -----------------

#: `httpx.Client` arguments that configure the transports httpx builds itself, and that it
#: ignores (or, for `proxy` and `mounts`, routes around the gate with) once `transport=` is given.
_TRANSPORT_OPTIONS: Final = ("verify", "cert", "trust_env", "http1", "http2", "limits", "proxy")

#: Arguments of older httpx versions that would route around (or be lost under) the gate.
_REFUSED_OPTIONS: Final = {
    "proxies": "httpx would route requests through its own proxy transports, past the gate; "
    "pass proxy= (one proxy for every URL) or mounts= with proxy transports",
    "app": "httpx ignores it once the gate is the transport; pass inner=httpx.WSGITransport(app) "
    "(or httpx.ASGITransport(app) to async_governed_client)",
}

T = TypeVar("T")


def _gated_arguments(
    function: str,
    gate: Callable[[T], T],
    build: Callable[..., T],
    inner: T | None,
    httpx_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """`httpx_kwargs` with every transport (its own, each mount's, the proxy's) under the gate."""
    kwargs = dict(httpx_kwargs)
    if "transport" in kwargs:
        raise TypeError(
            f"{function}(transport=...): pass your transport as inner=...; the gate wraps it, "
            "and must be the outermost transport"
        )
    for name, fix in _REFUSED_OPTIONS.items():
        if name in kwargs:
            raise TypeError(f"{function}({name}=...): {fix}")
    options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    if inner is not None and set(options) - {"trust_env"}:
        names = ", ".join(f"{name}=" for name in options if name != "trust_env")
        raise TypeError(
            f"{function}(inner=..., {names}): httpx applies {names} only to a transport it builds "
            "itself; configure the inner transport with them instead"
        )
    mounts: Mapping[str, T | None] = kwargs.pop("mounts", None) or {}
    transport = gate(inner if inner is not None else build(**options))
    kwargs["mounts"] = {
        pattern: None if mounted is None else gate(mounted) for pattern, mounted in mounts.items()
    }
    if "trust_env" in options:
        kwargs["trust_env"] = options["trust_env"]
    kwargs["transport"] = transport
    return kwargs


def governed_client(
    client: _SyncClient,
    *,
    inner: httpx.BaseTransport | None = None,
    enforcement: Enforcement | None = None,
    **httpx_kwargs: Any,
) -> httpx.Client:
    """An `httpx.Client` whose every request (and redirect hop) is authorized first.

    Takes `httpx.Client`'s arguments. `proxy=`, `verify=`, `cert=`, `http1=`, `http2=`,
    `limits=`, `trust_env=` configure the transport under the gate (or pass your own as
    `inner=`); each of `mounts=` is put under the gate too. `transport=` is refused: it would
    replace the gate. Proxies from the environment (``HTTPS_PROXY``, …) are not used: pass
    `proxy=`. `enforcement=` ("enforce" or "shadow") overrides the client's option for the
    requests of this client.
    """

    def gate(inner: httpx.BaseTransport) -> httpx.BaseTransport:
        if isinstance(inner, GatewayTransport):
            return inner
        return GatewayTransport(client, inner, enforcement=enforcement)

    kwargs = _gated_arguments("governed_client", gate, httpx.HTTPTransport, inner, httpx_kwargs)
    return httpx.Client(**kwargs)


def async_governed_client(
    client: _AsyncClient,
    *,
    inner: httpx.AsyncBaseTransport | None = None,
    enforcement: Enforcement | None = None,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request (and redirect hop) is authorized first; takes
    the same arguments as `governed_client`."""

    def gate(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        if isinstance(inner, AsyncGatewayTransport):
            return inner
        return AsyncGatewayTransport(client, inner, enforcement=enforcement)

    kwargs = _gated_arguments(
        "async_governed_client", gate, httpx.AsyncHTTPTransport, inner, httpx_kwargs
    )
    return httpx.AsyncClient(**kwargs)
