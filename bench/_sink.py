"""The benchmarks' ingest sink: a loopback HTTP/1.1 server in a process of its own.

It is deliberately small and cheap: `asyncio.start_server` and a minimal keep-alive parser,
so that on a 2-core machine the sink costs the SDK under test as little CPU as possible. It
answers what a client needs to deliver telemetry and ask for decisions:

- ``POST /v1/oauth/token``: any credentials get a JWT-shaped token (unsigned claims the SDKs
  read: ``sub``, ``permissions``, ``exp``), valid for an hour;
- ``POST /v1/ingest/events``: gunzips the body if needed, counts the events of the JSON array
  by their ``eventId`` and de-duplicates them; answers 202, or the status of the current mode
  (e.g. 503 for an outage, in which case nothing counts as delivered);
- ``POST /v1/ingest/traces``: counts trace Close ops (same modes);
- ``POST /v1/authorize`` and ``POST /echo``: the same fixed allow decision, so a raw httpx
  POST to ``/echo`` costs the server exactly what an ``authorize()`` costs it.

The control channel (``GET``) reads and steers it: ``/__stats[?since=T]``,
``/__mode?status=503``, ``/__reset``, ``/__wait?events=N&timeout=S`` (answers once N distinct
events were accepted), ``/__quiet?idle=S&timeout=T`` (answers once no ingest request arrived
for S seconds) and ``/__shutdown``. Times are ``time.monotonic()``, which on Linux is one
clock for every process (CLOCK_MONOTONIC), so a workload can compare them with its own.

Events are counted with a regular expression over the decompressed JSON (exact for the
benchmark's events, ~5x cheaper than ``json.loads``); ``--verify`` also parses every body as a
JSON array of objects and fails the request if the two disagree (the quick mode uses it).

Run by the orchestrator as ``python bench/_sink.py [--port 0] [--verify]``; it prints
``PORT <n>`` once it listens. `SinkProcess` starts and stops it; `SinkClient` is the control
client (stdlib only, so a workload running under another virtualenv can use it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import re
import select
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

EVENT_ID = re.compile(rb'"eventId"\s*:\s*"([^"\\]*)"')
TOKEN_PATH = b"/v1/oauth/token"
EVENTS_PATH = b"/v1/ingest/events"
TRACES_PATH = b"/v1/ingest/traces"
ALLOW = json.dumps(
    {"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_bench"},
    separators=(",", ":"),
).encode()
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found"}
_MAX_HEAD = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bench_token(agent_id: str = "bench-agent", ttl: int = 3600) -> str:
    """A JWT-shaped token: what the SDKs read from it is there; the signature is not real."""
    now = int(time.time())
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"sub": agent_id, "permissions": ["*"], "iat": now, "exp": now + ttl, "jti": "tok"}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(os.urandom(32))}"


class SinkState:
    """What the sink has seen since the last reset."""

    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.mode = 202
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.reset()

    def reset(self) -> None:
        self.seen: set[bytes] = set()
        self.paths: dict[str, int] = {}
        self.ingest_requests = 0
        self.accepted_requests = 0
        self.refused_requests = 0
        self.events_received = 0
        self.events_refused = 0
        self.duplicates = 0
        self.trace_closes = 0
        self.max_events_per_request = 0
        self.wire_bytes = 0
        self.gzipped_requests = 0
        self.unauthenticated = 0
        self.bad_requests = 0
        self.first_arrival: float | None = None
        self.last_arrival: float | None = None
        self.last_ack: float | None = None
        #: (arrival, accepted, events in the request, of which new) per ingest request
        self.arrivals: list[tuple[float, bool, int, int]] = []

    # --- ingest ------------------------------------------------------------------------------

    def ingest(self, headers: dict[bytes, bytes], raw: bytes, arrival: float) -> tuple[int, bytes]:
        self.ingest_requests += 1
        self.wire_bytes += len(raw)
        if b"authorization" not in headers and b"x-ingest-key" not in headers:
            self.unauthenticated += 1
        body = raw
        if headers.get(b"content-encoding", b"").lower() == b"gzip":
            self.gzipped_requests += 1
            try:
                body = zlib.decompress(raw, 31)
            except zlib.error:
                self.bad_requests += 1
                return 400, b'{"error":"bad_request","reason":"not gzip"}'
        ids = EVENT_ID.findall(body)
        if self.verify and not _verify(body, ids):
            self.bad_requests += 1
            return 400, b'{"error":"bad_request","reason":"not a JSON array of events"}'
        self.first_arrival = self.first_arrival or arrival
        self.last_arrival = arrival
        if self.mode >= 300:
            self.refused_requests += 1
            self.events_refused += len(ids)
            self.arrivals.append((arrival, False, len(ids), 0))
            return self.mode, b'{"error":"service_unavailable","reason":"bench outage"}'
        seen = self.seen
        before = len(seen)
        seen.update(ids)
        new = len(seen) - before
        self.accepted_requests += 1
        self.events_received += len(ids)
        self.duplicates += len(ids) - new
        self.max_events_per_request = max(self.max_events_per_request, len(ids))
        self.arrivals.append((arrival, True, len(ids), new))
        self._wake()
        return 202, b'{"accepted":%d,"duplicates":%d}' % (new, len(ids) - new)

    def trace(self, arrival: float) -> tuple[int, bytes]:
        self.last_arrival = arrival
        if self.mode >= 300:
            return self.mode, b'{"error":"service_unavailable","reason":"bench outage"}'
        self.trace_closes += 1
        return 202, b'{"accepted":1}'

    # --- waiting -----------------------------------------------------------------------------

    def _wake(self) -> None:
        count = len(self.seen)
        keep = []
        for target, future in self._waiters:
            if count >= target:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    async def wait_events(self, target: int, timeout: float) -> None:
        if len(self.seen) >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(future, timeout)

    async def wait_quiet(self, idle: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (now := time.monotonic()) < deadline:
            last = self.last_arrival
            if last is None or now - last >= idle:
                return
            await asyncio.sleep(min(0.05, max(0.0, deadline - now)))

    def stats(self, since: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "events_unique": len(self.seen),
            "events_received": self.events_received,
            "events_refused": self.events_refused,
            "duplicates": self.duplicates,
            "ingest_requests": self.ingest_requests,
            "accepted_requests": self.accepted_requests,
            "refused_requests": self.refused_requests,
            "trace_closes": self.trace_closes,
            "max_events_per_request": self.max_events_per_request,
            "wire_bytes": self.wire_bytes,
            "gzipped_requests": self.gzipped_requests,
            "unauthenticated": self.unauthenticated,
            "bad_requests": self.bad_requests,
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
            "last_ack": self.last_ack,
            "paths": dict(self.paths),
            "now": time.monotonic(),
        }
        if since is not None:
            after = [a for a in self.arrivals if a[0] > since]
            out["since"] = since
            out["requests_after"] = len(after)
            out["events_after"] = sum(a[2] for a in after)
            out["new_events_after"] = sum(a[3] for a in after)
        return out


def _verify(body: bytes, ids: list[bytes]) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    if not isinstance(parsed, list) or not all(isinstance(e, dict) for e in parsed):
        return False
    return [str(e.get("eventId")).encode() for e in parsed] == ids


class Sink:
    """The HTTP side of the sink: one coroutine per connection, keep-alive."""

    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.stopped = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                try:
                    method, target, version = lines[0].split(b" ", 2)
                except ValueError:
                    return
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(b":")
                        headers[name.strip().lower()] = value.strip()
                try:
                    body = await _read_body(reader, headers)
                except (asyncio.IncompleteReadError, ValueError, ConnectionError):
                    return
                arrival = time.monotonic()
                status, payload = await self.route(method, target, headers, body, arrival)
                keep = version == b"HTTP/1.1" and headers.get(b"connection", b"") != b"close"
                writer.write(_response(status, payload, keep))
                await writer.drain()
                if target.startswith(EVENTS_PATH):
                    self.state.last_ack = time.monotonic()
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return  # a client went away, or the sink is shutting down
        finally:
            writer.close()

    async def route(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes, at: float
    ) -> tuple[int, bytes]:
        state = self.state
        path, _, query = target.partition(b"?")
        key = path.decode("latin-1")
        state.paths[key] = state.paths.get(key, 0) + 1
        if path == EVENTS_PATH and method == b"POST":
            return state.ingest(headers, body, at)
        if path == TRACES_PATH and method == b"POST":
            return state.trace(at)
        if path in (b"/v1/authorize", b"/echo") and method == b"POST":
            return 200, ALLOW
        if path == TOKEN_PATH and method == b"POST":
            answer = {"access_token": bench_token(), "token_type": "Bearer", "expires_in": 3600}
            return 200, json.dumps(answer).encode()
        if path.startswith(b"/__"):
            return await self.control(key, parse_qs(query.decode("latin-1")))
        return 404, b'{"error":"not_found"}'

    async def control(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        state = self.state

        def number(name: str, default: float) -> float:
            return float(query.get(name, [default])[0])

        since = float(query["since"][0]) if "since" in query else None
        if path == "/__mode":
            state.mode = int(number("status", 202))
        elif path == "/__reset":
            state.reset()
        elif path == "/__wait":
            await state.wait_events(int(number("events", 0)), number("timeout", 30.0))
        elif path == "/__quiet":
            await state.wait_quiet(number("idle", 0.5), number("timeout", 10.0))
        elif path == "/__shutdown":
            self.stopped.set()
        elif path != "/__stats":
            return 404, b'{"error":"not_found"}'
        return 200, json.dumps(state.stats(since)).encode()


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get(b"content-length", b"0"))
    return await reader.readexactly(length) if length else b""


def _response(status: int, payload: bytes, keep: bool) -> bytes:
    reason = _REASONS.get(status, "Service Unavailable" if status == 503 else "Status")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
    )
    if not keep:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + payload


async def serve(port: int, verify: bool, announce: Callable[[int], None]) -> None:
    sink = Sink(SinkState(verify))
    server = await asyncio.start_server(
        sink.handle, "127.0.0.1", port, backlog=256, limit=_MAX_HEAD
    )
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await sink.stopped.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verify", action="store_true", help="also json-parse every batch")
    args = parser.parse_args(argv)

    def announce(port: int) -> None:
        print(f"PORT {port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.verify, announce))


# --- used by the orchestrator and by the workloads ---------------------------------------------


class SinkClient:
    """The sink's control channel, stdlib only (a workload may run under another venv)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def _get(self, path: str, wait: float = 0.0, **query: object) -> dict[str, Any]:
        target = path + ("?" + urlencode(query) if query else "")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=wait + 10.0)
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"sink {target}: {response.status} {body!r}")
            result: dict[str, Any] = json.loads(body)
            return result
        finally:
            connection.close()

    def stats(self, since: float | None = None) -> dict[str, Any]:
        return self._get("/__stats") if since is None else self._get("/__stats", since=since)

    def reset(self) -> dict[str, Any]:
        return self._get("/__reset")

    def set_mode(self, status: int) -> dict[str, Any]:
        return self._get("/__mode", status=status)

    def wait_events(self, events: int, timeout: float) -> dict[str, Any]:
        """Block until `events` distinct events were accepted (or `timeout`); the stats."""
        return self._get("/__wait", timeout, events=events, timeout=timeout)

    def wait_quiet(self, idle: float, timeout: float) -> dict[str, Any]:
        """Block until no ingest request arrived for `idle` seconds (or `timeout`); the stats."""
        return self._get("/__quiet", timeout, idle=idle, timeout=timeout)

    def shutdown(self) -> None:
        self._get("/__shutdown")


class SinkProcess:
    """Start the sink in a process of its own; stop it on exit."""

    def __init__(self, *, verify: bool = False, python: str = sys.executable) -> None:
        self._command = [python, os.path.abspath(__file__), "--port", "0"]
        if verify:
            self._command.append("--verify")
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> SinkProcess:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        process = subprocess.Popen(
            self._command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env
        )
        self._process = process
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20.0)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the bench sink did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    @property
    def client(self) -> SinkClient:
        return SinkClient(self.url)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if self.url and process.poll() is None:
            with contextlib.suppress(Exception):
                self.client.shutdown()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
