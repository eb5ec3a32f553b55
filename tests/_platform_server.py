"""A small but real Tracengent platform on 127.0.0.1, for the SDK's end-to-end tests.

The SDK's hard parts (token refresh on 401, retries with Retry-After, gzip, de-duplication,
approvals, tool governance, delegation) only show against a server that speaks HTTP for real:
a mocked transport cannot drop a connection, hold a request or race a retry. This module serves
the wire contract (API.md in the shared contract) with the standard library's
`ThreadingHTTPServer` from a background thread, parses and serializes with the generated models
(so the stand-in cannot drift from the schema) and signs tokens with PyJWT.

Tests steer it from their own thread: policy tables, scripted faults per path, a down mode, a
blackhole mode and an artificial delay; and they assert on what it recorded (requests, events,
traces, tool requests, token requests). Every wait it does is bounded, and `stop()` closes every
connection and joins every thread it started, so a test never hangs on it and leaks nothing.

Typical use::

    with PlatformServer() as platform:
        platform.fail_next("/v1/ingest/events", 503, times=2)
        ...  # drive the SDK against platform.url
        assert platform.wait_for_events(3, timeout=2)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from pydantic import BaseModel, ValidationError
from tracengent_api.models import (
    ApprovalResponse,
    ApprovalStatus,
    AttenuateRequest,
    AttenuateResponse,
    AuthorizeRequest,
    AuthorizeResponse,
    DelegatedToken,
    ErrorBody,
    Event,
    Obligations,
    Redaction,
    TokenRequest,
    TokenResponse,
    ToolAuthorizeRequest,
    ToolAuthorizeResponse,
    TraceClose,
)

__all__ = [
    "APPROVALS_PATH_PREFIX",
    "AUTHORIZE_PATH",
    "DEMO_AGENT_ID",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_INGEST_KEY",
    "EVENTS_PATH",
    "TOKEN_PATH",
    "TOOL_AUTHORIZE_PATH",
    "TRACES_PATH",
    "Answer",
    "PlatformServer",
    "RecordedRequest",
    "Rule",
    "ToolRule",
    "covers",
    "default_policy",
    "default_tool_rules",
]

# The contract's conventional demo identity: any SDK sample runs against it unchanged.
DEMO_AGENT_ID = "demo-agent"
DEMO_CLIENT_ID = "key_demo"
DEMO_CLIENT_SECRET = "ags_demo"
DEMO_INGEST_KEY = "agk_demo"

TOKEN_PATH = "/v1/oauth/token"
EVENTS_PATH = "/v1/ingest/events"
TRACES_PATH = "/v1/ingest/traces"
AUTHORIZE_PATH = "/v1/authorize"
TOOL_AUTHORIZE_PATH = "/v1/tool-authorize"
APPROVALS_PATH_PREFIX = "/v1/approvals/"

_APPROVAL_RE = re.compile(r"^/v1/approvals/([^/]+)$")
_ATTENUATE_RE = re.compile(r"^/v1/delegations/([^/]+)/attenuate$")
_DRAIN_LIMIT = 64 * 1024 * 1024  # an oversize body up to this is read (and dropped) to answer 413
_MAX_LINE = 65_536
_MAX_TRAILERS = 100
_THREAD_JOIN_SECONDS = 2.0
_APPROVAL_STATUSES = frozenset(s.value for s in ApprovalStatus)

Decision = Literal["allow", "deny", "pending"]
JsonObject = dict[str, Any]
_Model = TypeVar("_Model", bound=BaseModel)


# --- configuration types ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How `/v1/authorize` decides one permission pattern.

    A tiny policy language is enough to reach every branch of the SDK's authorization code
    (allowed with obligations, denied with a reason, held for a human) without a policy engine.
    """

    decision: Decision = "allow"
    reason: str | None = None
    """Sent as `reason`; defaults to "ok" / "denied by policy" / "approval required"."""
    obligations: Mapping[str, Any] | None = None
    """In wire form (`maxAmount`, `requireApprovalOver`, `currency`, `redactFields`)."""
    pending_over: float | None = None
    """An allowed request whose `context.amount` is above this becomes `pending_approval`."""
    max_tokens: int | None = None
    """An allowed request whose `context.estimatedTokens` is above this is denied."""
    approval_status: str = "pending"
    """The status an approval created by this rule starts with."""


@dataclass(frozen=True)
class ToolRule:
    """How `/v1/tool-authorize` decides one (transport, tool or host) pair."""

    decision: Decision = "allow"
    reason: str | None = None
    redactions: Sequence[Mapping[str, str]] = ()
    """In wire form: `{"field": "$.card", "strategy": "remove" | "mask"}`."""
    permission: str | None = None
    approval_status: str = "pending"


@dataclass(frozen=True)
class Answer:
    """One scripted answer to the next request on a path (see `PlatformServer.script`).

    `action="answer"` sends `status` with `body` (default: `{}` for a 2xx, else a JSON error
    `{"error": "service_unavailable", "reason": "scripted 503"}`) and
    `headers`; `"drop"` closes the connection without answering; `"hold"` keeps the request
    unanswered until the server stops or `max_hold` elapses, then closes it. With
    `process=True` the request is first handled normally (events stored, tokens issued, ...)
    and only the answer is replaced: the "delivered, but the answer was lost" case.
    """

    status: int = 503
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    action: Literal["answer", "drop", "hold"] = "answer"
    process: bool = False
    delay: float = 0.0


@dataclass
class RecordedRequest:
    """What one request looked like on the wire, for assertions."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lowercase names."""
    body: bytes
    """Decompressed when it came gzipped (raw when it could not be decompressed)."""
    raw_size: int
    """Bytes that came over the wire."""
    gzipped: bool
    time: float
    """`time.monotonic()` when the request line and headers had been read."""
    status: int | None = None
    """What was answered (set just before the answer is written); None while unanswered or
    when the connection was closed instead."""
    event_count: int | None = None
    """For a well-formed `/v1/ingest/events` batch: the number of events in it."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def covers(pattern: str, permission: str) -> bool:
    """Whether a permission pattern grants `permission` (which may itself be a pattern).

    `*` grants everything, an exact name itself, `ns:*` everything under `ns:` - including the
    narrower patterns `ns:*` and `ns:sub:*`, but not `*`.
    """
    if pattern == "*" or pattern == permission:
        return True
    if pattern.endswith(":*"):
        return permission != "*" and permission.startswith(pattern[:-1])
    return False


def default_policy(token_budget: int = 10_000) -> dict[str, Rule]:
    """The demo policy: what the SDK samples expect from a fresh platform."""
    return {
        "payments:refund": Rule(
            obligations={"maxAmount": 500, "currency": "EUR", "redactFields": ["$.card"]},
            pending_over=300,
        ),
        "llm:call": Rule(max_tokens=token_budget),
        "admin:*": Rule(decision="deny", reason="admin actions are denied by policy"),
        "*": Rule(),
    }


def default_tool_rules() -> dict[tuple[str, str], ToolRule]:
    """The demo tool table: card numbers never reach Stripe (the contract's canonical exchange)."""
    return {
        ("http", "api.stripe.com"): ToolRule(
            redactions=({"field": "$.card", "strategy": "remove"},)
        )
    }


# --- internals -------------------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False


class _HttpError(Exception):
    """Ends a request with a JSON error answer; raised anywhere below the dispatcher."""

    def __init__(self, status: int, error: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.reply = _Reply(status, _error_body(error, reason), close=close)


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _error_body(error: str, reason: str) -> bytes:
    return _dump(ErrorBody(error=error, reason=reason))


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]
    )


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _header_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _Server(ThreadingHTTPServer):
    """`ThreadingHTTPServer` whose handler threads are tracked, so `stop()` can join them."""

    daemon_threads = True  # a bug in a test must never keep the interpreter alive
    block_on_close = False  # we join our own threads, with a deadline

    def __init__(self, platform: PlatformServer) -> None:
        self.platform = platform
        self.handler_threads: list[threading.Thread] = []
        self._serial = itertools.count(1)
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can take seconds on a machine
        # with slow DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"platform-conn-{next(self._serial)}",
            daemon=True,
        )
        self.handler_threads = [t for t in self.handler_threads if t.is_alive()]
        self.handler_threads.append(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up is normal in fault tests; anything else is a bug worth seeing.
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.platform._note_error(repr(error))


class _Handler(BaseHTTPRequestHandler):
    """Reads one request off the wire and writes the answer `PlatformServer` decides."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the platform behind a real load balancer
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.platform.idle_timeout)  # bounds every read
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.platform._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.platform._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: pytest output is for the tests, and `requests` records everything."""

    def do_GET(self) -> None:
        self.server.platform._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- wire helpers used by PlatformServer._serve --

    def read_body(self, headers: Mapping[str, str], limit: int) -> tuple[bytes, bool]:
        """The raw body and whether it was over `limit` (in which case it is dropped)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _HttpError(400, "bad_request", "invalid Content-Length", close=True) from None
        if length < 0:
            raise _HttpError(400, "bad_request", "invalid Content-Length", close=True)
        if length > limit:
            if length > _DRAIN_LIMIT:
                raise _HttpError(413, "payload_too_large", "body too large", close=True)
            self._drain(length)
            return b"", True
        return self.rfile.read(length), False

    def _drain(self, length: int) -> None:
        left = length
        while left > 0:  # bounded: each read consumes input or ends the loop
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def _read_chunked(self, limit: int) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        total = 0
        while True:  # bounded: every pass consumes a chunk; the total is capped
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HttpError(400, "bad_request", "invalid chunk", close=True) from None
            if size == 0:
                break
            total += size
            if total > limit:
                raise _HttpError(413, "payload_too_large", "body too large", close=True)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE)
        for _ in range(_MAX_TRAILERS):
            if self.rfile.readline(_MAX_LINE) in (b"\r\n", b"\n", b""):
                break
        return b"".join(chunks), False

    def write_reply(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()


@dataclass
class _Caller:
    """Who made an authenticated request: token claims, or None for the ingest key."""

    claims: JsonObject | None

    @property
    def delegated(self) -> bool:
        return self.claims is not None and "grant_id" in self.claims


# --- the server ------------------------------------------------------------------------------


class PlatformServer:
    """The Tracengent platform stand-in. See the module docstring; all methods are thread-safe.

    Configuration attributes may be changed by a test at any time (they are read per request):
    `permissions`, `token_ttl`, `max_body_bytes`, `policy`, `tool_rules`, `egress_denylist`,
    `down`, `blackhole`, `delay`, `max_hold`.
    """

    def __init__(
        self,
        *,
        agent_id: str = DEMO_AGENT_ID,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        ingest_key: str | None = DEMO_INGEST_KEY,
        permissions: Sequence[str] = ("*",),
        token_ttl: int = 900,
        token_budget: int = 10_000,
        policy: Mapping[str, Rule] | None = None,
        tool_rules: Mapping[tuple[str, str], ToolRule] | None = None,
        egress_denylist: Iterable[str] = (),
        max_body_bytes: int = 1024 * 1024,
        max_decompressed_bytes: int = 32 * 1024 * 1024,
        max_hold: float = 5.0,
        idle_timeout: float = 5.0,
    ) -> None:
        self.agent_id = agent_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.ingest_key = ingest_key
        self.permissions: list[str] = list(permissions)
        self.token_ttl = token_ttl
        self.policy: dict[str, Rule] = (
            dict(policy) if policy is not None else default_policy(token_budget)
        )
        self.tool_rules: dict[tuple[str, str], ToolRule] = (
            dict(tool_rules) if tool_rules is not None else default_tool_rules()
        )
        self.egress_denylist: set[str] = {h.lower() for h in egress_denylist}
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_hold = max_hold
        self.idle_timeout = idle_timeout
        self.jwt_secret = secrets.token_bytes(32)
        """HS256 key of every token this server issues (tests may decode with it)."""

        self.down = False
        """Read each request, then close the connection without answering (the client sees
        a disconnect, e.g. httpx.RemoteProtocolError, not a refused connection)."""
        self.blackhole = False
        """Read each request, then never answer (until stop, `max_hold`, or this goes False)."""
        self.delay = 0.0
        """Seconds to wait before answering each request."""

        self._cond = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._jti = itertools.count(1)
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        self._errors: list[str] = []
        self._reset_state()

    # -- lifecycle --

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`; the SDK's base URL."""
        if self._httpd is None:
            raise RuntimeError("the platform server is not running")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> PlatformServer:
        """Bind a free port and serve from a background thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="platform-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection (held ones too) and join every thread.

        Idempotent. Bounded: held requests and waiters wake at once, connections are shut down
        so no handler stays blocked in a read, and every join has a deadline.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        httpd.shutdown()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        deadline = time.monotonic() + _THREAD_JOIN_SECONDS
        for t in [*httpd.handler_threads, *([thread] if thread else [])]:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():  # surfaced through `errors`, which the fixture asserts is empty
                self._note_error(f"{t.name} still running {_THREAD_JOIN_SECONDS}s after stop")
        self._httpd = None
        self._thread = None

    def __enter__(self) -> PlatformServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything recorded and every fault; re-enable the agent.

        Configuration (policy, tables, limits, permissions, ttl) and issued tokens are kept, so
        an SDK client that is already connected carries on across phases of a test.
        """
        with self._cond:
            self._reset_state()
            self.down = False
            self.blackhole = False
            self.delay = 0.0
            self._cond.notify_all()

    def _reset_state(self) -> None:
        self._events: list[JsonObject] = []
        self._event_ids: set[str] = set()
        self._duplicates = 0
        self._requests: list[RecordedRequest] = []
        self._token_requests = 0
        self._tokens_issued = 0
        self._traces: list[JsonObject] = []
        self._tool_requests: list[JsonObject] = []
        self._delegations: list[JsonObject] = []
        self._approvals: dict[str, str] = {}
        self._approval_polls: dict[str, int] = {}
        self._auto_resolve: tuple[str, int] | None = None
        self._scripts: dict[str, deque[Answer]] = {}
        self._counters: dict[str, itertools.count[int]] = {
            k: itertools.count(1) for k in ("dec", "apr", "dlg")
        }
        self._agent_enabled = True

    # -- introspection --

    @property
    def events(self) -> list[JsonObject]:
        """Stored events (the dicts as sent), de-duplicated, in arrival order."""
        with self._cond:
            return list(self._events)

    def event_ids(self) -> list[str]:
        """The stored events' ids, in arrival order."""
        with self._cond:
            return [str(e["eventId"]) for e in self._events]

    @property
    def duplicates(self) -> int:
        """How many received events repeated an eventId already stored."""
        with self._cond:
            return self._duplicates

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached the server, in arrival order (copies)."""
        with self._cond:
            return [replace(r) for r in self._requests]

    @property
    def ingest_requests(self) -> list[RecordedRequest]:
        """The requests to `/v1/ingest/events` only."""
        return [r for r in self.requests if r.path == EVENTS_PATH]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The requests to one exact path."""
        return [r for r in self.requests if r.path == path]

    @property
    def token_requests(self) -> int:
        """Requests that reached `/v1/oauth/token` (answered or not)."""
        with self._cond:
            return self._token_requests

    @property
    def tokens_issued(self) -> int:
        """Access tokens the token endpoint actually issued."""
        with self._cond:
            return self._tokens_issued

    @property
    def traces(self) -> list[JsonObject]:
        """Stored TraceClose records (as sent)."""
        with self._cond:
            return list(self._traces)

    @property
    def tool_requests(self) -> list[JsonObject]:
        """Bodies of valid `/v1/tool-authorize` requests (as sent)."""
        with self._cond:
            return list(self._tool_requests)

    @property
    def delegations(self) -> list[JsonObject]:
        """Claims of every child token minted by `/attenuate`."""
        with self._cond:
            return list(self._delegations)

    @property
    def errors(self) -> list[str]:
        """Unexpected exceptions inside the server (answered 500); should stay empty."""
        with self._cond:
            return list(self._errors)

    @property
    def agent_enabled(self) -> bool:
        with self._cond:
            return self._agent_enabled

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked after every request); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():  # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    return predicate()
                self._cond.wait(left)
            return True

    def wait_for_events(self, n: int, timeout: float) -> bool:
        """Wait until at least `n` distinct events are stored; False on timeout."""
        return self.wait_for(lambda: len(self._events) >= n, timeout)

    def wait_for_requests(self, path: str, n: int, timeout: float) -> bool:
        """Wait until at least `n` requests to `path` arrived (answered or not)."""
        return self.wait_for(lambda: sum(r.path == path for r in self._requests) >= n, timeout)

    # -- steering: auth --

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far; the next call with one gets 401."""
        with self._cond:
            self._revoked |= self._issued

    def disable_agent(self) -> None:
        """Revoke all tokens and refuse the token endpoint (401) until `enable_agent()`."""
        with self._cond:
            self._agent_enabled = False
            self._revoked |= self._issued

    def enable_agent(self) -> None:
        with self._cond:
            self._agent_enabled = True

    def issue_access_token(
        self, permissions: Sequence[str] | None = None, ttl: int | None = None
    ) -> str:
        """An agent access token as the token endpoint would issue it, without a request.

        A negative `ttl` gives an already expired token.
        """
        perms = list(self.permissions if permissions is None else permissions)
        return self._mint(
            {"sub": self.agent_id, "permissions": perms},
            self.token_ttl if ttl is None else ttl,
            f"tok_{next(self._jti)}",
        )

    def mint_delegated_token(
        self,
        permissions: Sequence[str],
        acting_for: str = "u_1",
        chain: Sequence[str] = ("u_1", DEMO_AGENT_ID),
        max_amount: float | None = None,
        ttl: int = 300,
        *,
        grant_id: str | None = None,
    ) -> str:
        """A delegated token (what a user's grant gives the agent), registered as issued.

        Claims: sub (the chain's last member), grant_id (`dlg_<n>` unless given), acting_for,
        delegation_chain, delegated_permissions (also as permissions), max_amount, exp, jti.
        """
        with self._cond:
            grant = grant_id or f"dlg_{next(self._counters['dlg'])}"
        claims: JsonObject = {
            "sub": chain[-1] if chain else self.agent_id,
            "grant_id": grant,
            "acting_for": acting_for,
            "delegation_chain": list(chain),
            "delegated_permissions": list(permissions),
            "permissions": list(permissions),
        }
        if max_amount is not None:
            claims["max_amount"] = max_amount
        return self._mint(claims, ttl, f"j_{next(self._jti)}")

    def decode_token(self, token: str) -> JsonObject:
        """The claims of a token this server signed (signature checked, expiry not)."""
        return jwt.decode(
            token, self.jwt_secret, algorithms=["HS256"], options={"verify_exp": False}
        )

    # -- steering: approvals --

    def approval_ids(self) -> list[str]:
        """Approvals created so far, oldest first."""
        with self._cond:
            return list(self._approvals)

    def approval_status(self, approval_id: str) -> str:
        with self._cond:
            return self._approvals[approval_id]

    def set_approval_status(self, approval_id: str, status: str) -> None:
        """Decide a pending approval as a human would: pending/approved/denied/expired."""
        if status not in _APPROVAL_STATUSES:
            raise ValueError(f"unknown approval status {status!r}")
        with self._cond:
            if approval_id not in self._approvals:
                raise KeyError(approval_id)
            self._approvals[approval_id] = status

    def auto_resolve_approvals(self, status: str | None, after_polls: int = 1) -> None:
        """Let every pending approval become `status` on its `after_polls`-th GET (None: off).

        So a test can drive the SDK's blocking wait-for-approval without a second thread.
        """
        if status is not None and status not in _APPROVAL_STATUSES:
            raise ValueError(f"unknown approval status {status!r}")
        with self._cond:
            self._auto_resolve = None if status is None else (status, max(1, after_polls))

    # -- steering: faults --

    def script(self, path: str, *answers: Answer) -> None:
        """Queue answers for the next requests to `path` (exact path, or "*" for any path)."""
        with self._cond:
            self._scripts.setdefault(path, deque()).extend(answers)

    def fail_next(
        self,
        path: str,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        process: bool = False,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` (and `Retry-After`)."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = (
                retry_after if isinstance(retry_after, str) else _header_number(retry_after)
            )
        answer = Answer(status=status, body=body, headers=extra, process=process)
        self.script(path, *([answer] * times))

    def drop_next(self, path: str, *, times: int = 1, process: bool = False) -> None:
        """Close the connection without answering the next `times` requests to `path`."""
        self.script(path, *([Answer(action="drop", process=process)] * times))

    def hold_next(self, path: str, *, times: int = 1) -> None:
        """Never answer the next `times` requests to `path` (until stop or `max_hold`)."""
        self.script(path, *([Answer(action="hold")] * times))

    def pending_scripts(self, path: str) -> int:
        """Scripted answers not yet used for `path`."""
        with self._cond:
            return len(self._scripts.get(path, ()))

    # -- request handling (handler threads) --

    def _track(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.add(conn)
        if self._stopping.is_set():  # accepted while stopping: do not let it block a join
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _untrack(self, conn: socket.socket) -> None:
        with self._cond:
            self._connections.discard(conn)

    def _note_error(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)

    def _mint(self, claims: JsonObject, ttl: int, jti: str) -> str:
        now = int(time.time())
        payload = {**claims, "iat": now, "exp": now + ttl, "jti": jti}
        with self._cond:
            self._issued.add(jti)
        return jwt.encode(payload, self.jwt_secret, algorithm="HS256")

    def _next(self, kind: str) -> str:
        with self._cond:
            return f"{kind}_{next(self._counters[kind])}"

    def _serve(self, handler: _Handler) -> None:
        """One request: read it, record it, apply the fault modes, then answer it (or not)."""
        arrived = time.monotonic()
        url = urlsplit(handler.path)
        path = unquote(url.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        record = RecordedRequest(handler.command, path, url.query, headers, b"", 0, False, arrived)
        try:
            raw, oversize = handler.read_body(headers, self.max_body_bytes)
        except _HttpError as error:
            self._record(record)
            self._answer(handler, record, error.reply)
            return
        record.raw_size = len(raw)
        body, decode_error = self._decode_body(raw, headers, record)
        self._record(record)

        if self.down:
            self._close_unanswered(handler)
            return
        if self.blackhole:
            self._hold(lambda: not self.blackhole)
            self._close_unanswered(handler)
            return
        if self.delay > 0:
            self._stopping.wait(self.delay)
        scripted = self._pop_script(path)
        if scripted is not None:
            if scripted.delay > 0:
                self._stopping.wait(scripted.delay)
            if scripted.process and not oversize and decode_error is None:
                self._route(handler.command, path, headers, body, record)
            if scripted.action == "drop":
                self._close_unanswered(handler)
            elif scripted.action == "hold":
                self._hold(lambda: False)
                self._close_unanswered(handler)
            else:
                reply = _Reply(scripted.status, _scripted_body(scripted), scripted.headers)
                self._answer(handler, record, reply)
            return

        if oversize:
            reason = f"body larger than {self.max_body_bytes} bytes"
            reply = _Reply(413, _error_body("payload_too_large", reason))
        elif decode_error is not None:
            reply = decode_error.reply
        else:
            reply = self._route(handler.command, path, headers, body, record)
        self._answer(handler, record, reply)

    def _decode_body(
        self, raw: bytes, headers: Mapping[str, str], record: RecordedRequest
    ) -> tuple[bytes, _HttpError | None]:
        encoding = headers.get("content-encoding", "identity").strip().lower()
        record.body = raw
        if encoding in ("", "identity"):
            return raw, None
        if encoding != "gzip":
            return raw, _HttpError(415, "unsupported_encoding", f"unsupported {encoding!r}")
        record.gzipped = True
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(raw, self.max_decompressed_bytes)
        except zlib.error:
            return raw, _HttpError(400, "bad_request", "body is not valid gzip")
        if inflater.unconsumed_tail:
            return raw, _HttpError(413, "payload_too_large", "decompressed body too large")
        if not inflater.eof:
            return raw, _HttpError(400, "bad_request", "truncated gzip body")
        record.body = body
        return body, None

    def _record(self, record: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(record)
            if record.path == TOKEN_PATH:
                self._token_requests += 1
            self._cond.notify_all()

    def _answer(self, handler: _Handler, record: RecordedRequest, reply: _Reply) -> None:
        # Recorded before writing: once the client has the answer, a test may assert on it.
        with self._cond:
            record.status = reply.status
            self._cond.notify_all()
        handler.write_reply(reply)

    def _close_unanswered(self, handler: _Handler) -> None:
        handler.close_connection = True

    def _hold(self, released: Callable[[], bool]) -> None:
        """Block this handler until stop, `max_hold`, or `released()`; bounded by `max_hold`."""
        deadline = time.monotonic() + self.max_hold
        with self._cond:
            while not (self._stopping.is_set() or released()):  # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.1))

    def _pop_script(self, path: str) -> Answer | None:
        with self._cond:
            for key in (path, "*"):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
        return None

    def _route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, rec: RecordedRequest
    ) -> _Reply:
        try:
            if path == TOKEN_PATH:
                self._require(method, "POST")
                return self._token(headers, body)
            caller = self._authenticate(headers)
            if path == EVENTS_PATH:
                self._require(method, "POST")
                return self._ingest_events(body, rec)
            if path == TRACES_PATH:
                self._require(method, "POST")
                return self._ingest_trace(body)
            if path == AUTHORIZE_PATH:
                self._require(method, "POST")
                return self._authorize(body, caller)
            if path == TOOL_AUTHORIZE_PATH:
                self._require(method, "POST")
                return self._tool_authorize(body)
            if match := _APPROVAL_RE.match(path):
                self._require(method, "GET")
                return self._get_approval(match.group(1))
            if match := _ATTENUATE_RE.match(path):
                self._require(method, "POST")
                return self._attenuate(match.group(1), body, caller)
            raise _HttpError(404, "not_found", f"no endpoint {path}")
        except _HttpError as error:
            return error.reply
        except Exception as error:  # noqa: BLE001 - a bug must show as a 500, not a hung client
            self._note_error(repr(error))
            return _Reply(500, _error_body("internal", repr(error)))

    @staticmethod
    def _require(method: str, expected: str) -> None:
        if method != expected:
            raise _HttpError(405, "method_not_allowed", f"use {expected}")

    @staticmethod
    def _parse(model: type[_Model], body: bytes) -> _Model:
        try:
            return model.model_validate_json(body)
        except ValidationError as error:
            raise _HttpError(400, "bad_request", _problems(error)) from None

    # -- auth --

    def _token(self, headers: Mapping[str, str], body: bytes) -> _Reply:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _HttpError(400, "invalid_request", "expected a form body")
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            request = TokenRequest.model_validate(form)
        except (UnicodeDecodeError, ValidationError):
            raise _HttpError(400, "invalid_request", "not a client_credentials grant") from None
        if request.client_id != self.client_id or request.client_secret != self.client_secret:
            raise _HttpError(401, "invalid_client", "unknown client credentials")
        if not self.agent_enabled:
            raise _HttpError(401, "unauthorized", "agent disabled")
        token = self.issue_access_token()
        with self._cond:
            self._tokens_issued += 1
        answer = TokenResponse(access_token=token, token_type="Bearer", expires_in=self.token_ttl)
        return _Reply(200, _dump(answer))

    def _authenticate(self, headers: Mapping[str, str]) -> _Caller:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _HttpError(401, "unauthorized", "malformed Authorization header")
            return _Caller(self._verify(token.strip()))
        key = headers.get("x-ingest-key")
        if key is not None:
            if self.ingest_key is not None and secrets.compare_digest(key, self.ingest_key):
                return _Caller(None)
            raise _HttpError(401, "unauthorized", "unknown ingest key")
        raise _HttpError(401, "unauthorized", "missing credentials")

    def _verify(self, token: str) -> JsonObject:
        try:
            claims = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], options={"require": ["exp", "jti"]}
            )
        except jwt.ExpiredSignatureError:
            raise _HttpError(401, "unauthorized", "token expired") from None
        except jwt.InvalidTokenError:
            raise _HttpError(401, "unauthorized", "invalid token") from None
        jti = str(claims["jti"])
        with self._cond:
            if jti not in self._issued:
                raise _HttpError(401, "unauthorized", "unknown token")
            if jti in self._revoked:
                raise _HttpError(401, "unauthorized", "token revoked")
        return claims

    # -- ingest --

    def _ingest_events(self, body: bytes, rec: RecordedRequest) -> _Reply:
        try:
            batch = json.loads(body)
        except ValueError:
            raise _HttpError(400, "bad_request", "body is not JSON") from None
        if not isinstance(batch, list):
            raise _HttpError(400, "bad_request", "body must be a JSON array of events")
        for index, item in enumerate(batch):
            try:
                Event.model_validate(item)
            except ValidationError as error:
                raise _HttpError(400, "bad_request", f"event {index}: {_problems(error)}") from None
        accepted = duplicates = 0
        with self._cond:
            rec.event_count = len(batch)
            for item in batch:
                event_id = item["eventId"]
                if event_id in self._event_ids:
                    duplicates += 1
                    continue
                self._event_ids.add(event_id)
                self._events.append(item)
                accepted += 1
            self._duplicates += duplicates
            self._cond.notify_all()
        return _Reply(202, _compact({"accepted": accepted, "duplicates": duplicates}))

    def _ingest_trace(self, body: bytes) -> _Reply:
        self._parse(TraceClose, body)
        with self._cond:
            self._traces.append(json.loads(body))
            self._cond.notify_all()
        return _Reply(202, _compact({"accepted": 1}))

    # -- authorization --

    def _rule_for(self, permission: str) -> Rule:
        """Exact rule, else the longest matching `ns:*` rule, else `*`, else allow."""
        policy = self.policy
        if permission in policy:
            return policy[permission]
        prefixes = [p for p in policy if p.endswith(":*") and covers(p, permission)]
        if prefixes:
            return policy[max(prefixes, key=len)]
        return policy.get("*", Rule())

    def _new_approval(self, status: str) -> str:
        approval_id = self._next("apr")
        with self._cond:
            self._approvals[approval_id] = status
        return approval_id

    def _authorize(self, body: bytes, caller: _Caller) -> _Reply:
        request = self._parse(AuthorizeRequest, body)
        claims = caller.claims or {}
        decision_id = self._next("dec")
        chain = _as_list(claims["delegation_chain"]) if "delegation_chain" in claims else None
        acting_for = claims.get("acting_for")
        context = request.context
        amount = context.amount if context else None
        tokens = context.estimated_tokens if context else None

        def answer(
            status: str,
            reason: str,
            *,
            approval_id: str | None = None,
            obligations: Mapping[str, Any] | None = None,
        ) -> _Reply:
            response = AuthorizeResponse(
                allowed=status == "allowed",
                status=status,
                reason=reason,
                decision_id=decision_id,
                approval_id=approval_id,
                acting_for=None if acting_for is None else str(acting_for),
                chain=chain,
                obligations=None
                if obligations is None
                else Obligations.model_validate(obligations),
            )
            return _Reply(200, _dump(response))

        permission = request.permission
        if "permissions" in claims and not any(
            covers(p, permission) for p in _as_list(claims["permissions"])
        ):
            return answer("denied", "permission not granted to this token")
        if caller.delegated:
            max_amount = claims.get("max_amount")
            if amount is not None and max_amount is not None and amount > max_amount:
                return answer("denied", "amount exceeds the delegation's maxAmount")
        rule = self._rule_for(permission)
        if rule.decision == "deny":
            return answer("denied", rule.reason or "denied by policy")
        if rule.decision == "pending":
            reason = rule.reason or "approval required"
            return answer(
                "pending_approval", reason, approval_id=self._new_approval(rule.approval_status)
            )
        if rule.pending_over is not None and amount is not None and amount > rule.pending_over:
            reason = f"amounts over {_header_number(rule.pending_over)} need approval"
            return answer(
                "pending_approval", reason, approval_id=self._new_approval(rule.approval_status)
            )
        if rule.max_tokens is not None and tokens is not None and tokens > rule.max_tokens:
            return answer("denied", "token budget exceeded")
        return answer("allowed", rule.reason or "ok", obligations=rule.obligations)

    def _get_approval(self, approval_id: str) -> _Reply:
        with self._cond:
            status = self._approvals.get(approval_id)
            if status is None:
                raise _HttpError(404, "not_found", f"no approval {approval_id}")
            polls = self._approval_polls[approval_id] = self._approval_polls.get(approval_id, 0) + 1
            if status == "pending" and self._auto_resolve and polls >= self._auto_resolve[1]:
                status = self._approvals[approval_id] = self._auto_resolve[0]
        return _Reply(200, _dump(ApprovalResponse(status=status)))

    def _tool_authorize(self, body: bytes) -> _Reply:
        request = self._parse(ToolAuthorizeRequest, body)
        with self._cond:
            self._tool_requests.append(json.loads(body))
            self._cond.notify_all()
        transport = request.transport.value
        host = (request.host or "").lower()
        if transport == "http" and host in self.egress_denylist:
            response = ToolAuthorizeResponse(
                allowed=False,
                status="denied",
                outcome="egress_deny",
                reason="host not on the egress allowlist",
            )
            return _Reply(200, _dump(response))
        target = {"http": host, "mcp": request.tool_name, "function": request.function_name}
        name = target.get(transport) or ""
        rule = self.tool_rules.get((transport, name)) or self.tool_rules.get((transport, "*"))
        rule = rule or ToolRule()
        if rule.decision == "deny":
            response = ToolAuthorizeResponse(
                allowed=False,
                status="denied",
                outcome="policy_deny",
                reason=rule.reason or "denied by policy",
                permission=rule.permission,
                decision_id=self._next("dec"),
            )
        elif rule.decision == "pending":
            response = ToolAuthorizeResponse(
                allowed=False,
                status="pending_approval",
                outcome="approval_required",
                reason=rule.reason or "approval required",
                permission=rule.permission,
                decision_id=self._next("dec"),
                approval_id=self._new_approval(rule.approval_status),
            )
        else:
            response = ToolAuthorizeResponse(
                allowed=True,
                status="allowed",
                outcome="policy_allow",
                reason=rule.reason,
                permission=rule.permission,
                redactions=[Redaction.model_validate(r) for r in rule.redactions] or None,
            )
        return _Reply(200, _dump(response))

    # -- delegation --

    def _attenuate(self, grant_id: str, body: bytes, caller: _Caller) -> _Reply:
        claims = caller.claims
        if claims is None or not caller.delegated:
            raise _HttpError(403, "forbidden", "attenuation needs a delegated token")
        if claims["grant_id"] != grant_id:
            raise _HttpError(403, "forbidden", "the token belongs to another grant")
        request = self._parse(AttenuateRequest, body)
        parent_permissions = _as_list(claims.get("delegated_permissions"))
        for permission in request.permissions:
            if not any(covers(p, permission) for p in parent_permissions):
                raise _HttpError(403, "forbidden", f"{permission!r} is not covered by the parent")
        parent_max = claims.get("max_amount")
        max_amount = request.max_amount if request.max_amount is not None else parent_max
        if parent_max is not None and max_amount is not None and max_amount > parent_max:
            raise _HttpError(403, "forbidden", "maxAmount is larger than the parent's")
        now = int(time.time())
        parent_exp = int(claims["exp"])
        ttl = request.expires_in_seconds
        if ttl is None:
            ttl = min(300, parent_exp - now)
        elif now + ttl > parent_exp:
            raise _HttpError(403, "forbidden", "expiry is later than the parent's")
        if ttl <= 0:
            raise _HttpError(403, "forbidden", "the parent grant has expired")
        child = self._next("dlg")
        jti = f"j_{next(self._jti)}"
        child_claims: JsonObject = {
            "sub": request.granted_to_agent_id,
            "grant_id": child,
            "parent_grant_id": grant_id,
            "acting_for": claims.get("acting_for"),
            "delegation_chain": [
                *_as_list(claims.get("delegation_chain")),
                request.granted_to_agent_id,
            ],
            "delegated_permissions": list(request.permissions),
            "permissions": list(request.permissions),
        }
        if max_amount is not None:
            child_claims["max_amount"] = max_amount
        token = self._mint(child_claims, ttl, jti)
        with self._cond:
            self._delegations.append({**child_claims, "exp": now + ttl, "jti": jti})
            self._cond.notify_all()
        answer = AttenuateResponse(
            token=DelegatedToken(access_token=token, token_type="Bearer", expires_in=ttl, jti=jti)
        )
        return _Reply(200, _dump(answer))


def _scripted_body(answer: Answer) -> bytes:
    if answer.body is not None:
        return _compact(answer.body)
    if 200 <= answer.status < 300:
        return b"{}"
    return _error_body(_phrase(answer.status), f"scripted {answer.status}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"
