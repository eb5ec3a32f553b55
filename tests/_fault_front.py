"""A fault-injecting HTTP front on 127.0.0.1 over the real local platform, in this process.

The SDK's hard parts (retries with Retry-After, 413 splits, de-duplication of a batch whose
answer was lost, deadlines against a platform that never answers) only show against a server
that speaks HTTP for real: a mocked transport cannot drop a connection or hold a request. The
platform itself never misbehaves on purpose, so this front stands between the SDK and it: every
request is read off the wire, recorded, and handed to the real `Platform.handle` (the same
handling `tracengent dev` serves) unless a fault says otherwise. What was stored is read from
the platform's own `Store`; the decisions are the policy's (TOML, as the platform loads it).

Faults: `fail_next` (a status, with Retry-After), `drop_next` (close without answering),
`hold_next` (never answer), each optionally after the platform processed the request
(`process=True`: "delivered, but the answer was lost"); `down` (read, then close unanswered),
`blackhole` (read, then hold), `delay`. Every hold is bounded by `max_hold` and ends at `stop()`,
which closes every connection, so a test never hangs on the front.

    with FaultFront() as front:
        front.fail_next(EVENTS_PATH, 503, times=2)
        ...  # drive the SDK against front.url
        assert sorted(front.event_ids()) == [...]
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from tracengent.platform import DEFAULT_POLICY_TOML, Platform, Store, parse_policy

__all__ = [
    "APPROVALS_PATH",
    "EVENTS_PATH",
    "TOKEN_PATH",
    "TOOL_AUTHORIZE_PATH",
    "Fault",
    "FaultFront",
    "RecordedRequest",
]

TOKEN_PATH = "/v1/oauth/token"
EVENTS_PATH = "/v1/ingest/events"
TOOL_AUTHORIZE_PATH = "/v1/tool-authorize"
APPROVALS_PATH = "/v1/approvals/"
_IDLE_TIMEOUT_S = 5.0  # an idle keep-alive connection's handler thread ends after this
_JOIN_S = 2.0


@dataclass(frozen=True)
class Fault:
    """What the front does with the next request to a path instead of (or after) forwarding it.

    `action="answer"` sends `status` with `headers` and a JSON error body; `"drop"` closes the
    connection without answering; `"hold"` keeps the request unanswered until `max_hold` or
    `stop()`, then closes it. `process=True` hands the request to the platform first.
    """

    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    action: Literal["answer", "drop", "hold"] = "answer"
    process: bool = False


@dataclass
class RecordedRequest:
    """One request as it came over the wire, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes  # decompressed when it came gzipped
    raw_size: int  # bytes that came over the wire
    time: float  # time.monotonic() when its headers had been read
    status: int | None = None  # what the client was answered; None: closed instead
    platform_answer: bytes | None = None  # what the platform answered, when it was asked

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a bug in a test must never keep the interpreter alive
    block_on_close = False  # stop() joins the handler threads itself, with a deadline

    def __init__(self, front: FaultFront) -> None:
        self.front = front
        self.handlers: list[threading.Thread] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's FQDN lookup: slow DNS, never used
        socketserver.TCPServer.server_bind(self)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.handlers = [t for t in self.handlers if t.is_alive()] + [thread]
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client hanging up is normal in fault tests
            self.front.errors.append(repr(error))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as behind a real load balancer
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(_IDLE_TIMEOUT_S)
        # Headers and body go out in two writes; without this, Nagle and delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.front._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.front._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: `requests` records everything, and logs are asserted on (test_secrets)."""

    def do_GET(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.front._serve(self, raw)

    do_POST = do_GET

    def answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class FaultFront:
    """The real platform (in-memory store, `policy` TOML: default the demo policy) behind faults.

    `down`, `blackhole` and `delay` may be changed by a test at any time; they are read per
    request. `platform` may be replaced (`use_policy`) between requests; the store stays.
    """

    def __init__(
        self, policy: str = DEFAULT_POLICY_TOML, *, max_body_bytes: int = 1024 * 1024
    ) -> None:
        self.store = Store()
        self.platform = Platform(parse_policy(policy), self.store, max_body_bytes=max_body_bytes)
        self.down = False
        self.blackhole = False
        self.delay = 0.0
        self.max_hold = 5.0
        self.errors: list[str] = []  # exceptions inside the front itself; should stay empty
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._reviews: tuple[int, bool] | None = None
        self._connections: set[socket.socket] = set()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle --

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, wake every hold, close every connection, join every thread (bounded).

        Idempotent; the store is closed too, so read what a test needs before.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        deadline = time.monotonic() + _JOIN_S
        for thread in [*self._server.handlers, self._thread]:
            if thread.ident is not None:  # started
                thread.join(max(0.0, deadline - time.monotonic()))
        self.store.close()

    def use_policy(self, policy: str, *, max_body_bytes: int = 1024 * 1024) -> None:
        """The platform restarted with another policy (TOML) over the same store and keys."""
        self.platform = Platform(parse_policy(policy), self.store, max_body_bytes=max_body_bytes)

    # -- faults --

    def script(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests to `path` (exact), used one per request."""
        with self._cond:
            self._faults.setdefault(path, deque()).extend(faults)

    def fail_next(
        self,
        path: str,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        process: bool = False,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` (and `Retry-After`)."""
        headers = {} if retry_after is None else {"Retry-After": _header_value(retry_after)}
        self.script(path, *[Fault(status, headers, process=process)] * times)

    def drop_next(self, path: str, *, times: int = 1, process: bool = False) -> None:
        """Close the connection without answering the next `times` requests to `path`."""
        self.script(path, *[Fault(action="drop", process=process)] * times)

    def hold_next(self, path: str, *, times: int = 1) -> None:
        """Never answer the next `times` requests to `path` (until `max_hold` or stop)."""
        self.script(path, *[Fault(action="hold")] * times)

    def review_approvals(self, approve: bool, *, on_poll: int = 1) -> None:
        """A person deciding each pending approval (in the store, as `tracengent approve`
        does) just before the platform answers its `on_poll`-th poll."""
        with self._cond:
            self._reviews = (max(1, on_poll), approve)

    # -- what happened --

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [replace(r) for r in self._requests]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def token_requests(self) -> int:
        return len(self.requests_to(TOKEN_PATH))

    @property
    def tool_requests(self) -> list[Any]:
        """The bodies of the tool-authorize requests the platform decided."""
        return [r.json() for r in self.requests_to(TOOL_AUTHORIZE_PATH) if r.platform_answer]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events the platform stored, in arrival order."""
        return self.store.events()

    def event_ids(self) -> list[str]:
        return [str(e["eventId"]) for e in self.events]

    @property
    def duplicates(self) -> int:
        """Events the platform reported as already stored, over every batch it was handed."""
        answers = [r.platform_answer for r in self.requests_to(EVENTS_PATH)]
        return sum(json.loads(a).get("duplicates", 0) for a in answers if a)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked after every request); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():  # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def wait_for_requests(self, path: str, n: int, timeout: float) -> bool:
        return self.wait_for(lambda: sum(r.path == path for r in self._requests) >= n, timeout)

    # -- one request (handler threads) --

    def _serve(self, handler: _Handler, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = handler.path.split("?", 1)[0]
        record = RecordedRequest(
            handler.command, path, headers, _inflated(raw, headers), len(raw), time.monotonic()
        )
        with self._cond:
            self._requests.append(record)
            fault = self._faults[path].popleft() if self._faults.get(path) else None
            self._cond.notify_all()
        if self.down:
            handler.close_connection = True
            return
        if self.blackhole:
            self._hold(lambda: not self.blackhole)
            handler.close_connection = True
            return
        if self.delay > 0:
            self._stopping.wait(self.delay)
        if fault is None or fault.process:
            self._review(path)
            reply = self.platform.handle(handler.command, path, headers, raw)
            with self._cond:
                record.platform_answer = reply.body
        if fault is not None and fault.action != "answer":
            if fault.action == "hold":
                self._hold(lambda: False)
            handler.close_connection = True
            return
        if fault is None:
            status, body, extra = reply.status, reply.body, {}
        else:
            status, extra = fault.status, dict(fault.headers)
            body = json.dumps({"error": "fault", "reason": f"injected {status}"}).encode()
        with self._cond:  # recorded before it is written: once answered, a test may look
            record.status = status
            self._cond.notify_all()
        handler.answer(status, body, extra)

    def _review(self, path: str) -> None:
        if self._reviews is None or not path.startswith(APPROVALS_PATH):
            return
        on_poll, approve = self._reviews
        approval = self.store.approval(path[len(APPROVALS_PATH) :])
        polls = sum(r.path == path for r in self.requests)
        if approval is not None and approval.status == "pending" and polls >= on_poll:
            self.store.decide_approval(approval.approval_id, approve)

    def _hold(self, released: Callable[[], bool]) -> None:
        """Block this handler until `released()`, stop, or `max_hold` (the bound)."""
        deadline = time.monotonic() + self.max_hold
        with self._cond:
            while not (self._stopping.is_set() or released()):  # bounded by the deadline
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.1))


def _inflated(raw: bytes, headers: Mapping[str, str]) -> bytes:
    if headers.get("content-encoding", "").lower() != "gzip":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        return raw


def _header_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
