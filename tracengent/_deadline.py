"""One deadline for a whole HTTP exchange: connect, send, response headers and body.

httpx's timeouts bound each socket operation, and httpcore reads a request's timeout once per
phase (sending, receiving the headers, receiving the body) and then uses it for every read of
that phase. A platform that dribbles its answer one byte at a time never lets one read wait long,
so a 1 s timeout lets the exchange run for as long as the platform likes. `authorize_timeout_s`
is a promise about the exchange, so the request carries its deadline instead of a duration:

- `with_deadline` sets the request's `timeout` extension to a `Deadline`, a mapping that
  answers "the time left" whenever httpcore (or any transport) looks, so each phase starts with
  what is left rather than the whole timeout;
- `bound_by_deadlines` wraps the network backend of an `httpx.Client`'s (or `AsyncClient`'s) own
  connection pools, so that every single read, write and connect of a request that carries a
  `Deadline` waits at most until that deadline, and one that starts after it raises httpcore's
  timeout for that operation (httpx turns it into `httpx.ReadTimeout` and so on). It works for
  HTTP/1.1 and HTTP/2, directly and through a proxy, and leaves a request without a `Deadline`
  (or a pool shared with other code) exactly as it was;
- `within` bounds an awaitable as a whole, for transports that do not reach a socket we can wrap
  (the embedded platform, a transport the application passed in).

The sync and the async driver (`_flow.run_sync`, `_flow.run_async`) use the same `Deadline`; the
async one also awaits under `within`, which bounds whatever the transport is. A sync transport
that never reaches a socket (the embedded platform runs in the caller's thread) cannot be
interrupted; it answers at once, so nothing there needs to be.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpcore
import httpx

T = TypeVar("T")

_PHASES = ("connect", "read", "write", "pool")
#: Handed to a phase that starts with no time left, so a transport that does not reach our
#: backend still fails at once instead of reading "no timeout" or a negative one.
_NO_TIME_S = 1e-3
#: Writes are cut into pieces of this size so a peer that reads slowly meets the deadline too
#: (a backend writes one buffer in a loop with the same timeout for every send).
_WRITE_PIECE = 64 * 1024


class Deadline(Mapping[str, float]):
    """A request's `timeout` extension that always answers the time left until `at`."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def __getitem__(self, phase: str) -> float:
        if phase not in _PHASES:
            raise KeyError(phase)
        return _Left(max(_NO_TIME_S, self.left()), self)

    def __iter__(self) -> Iterator[str]:
        return iter(_PHASES)

    def __len__(self) -> int:
        return len(_PHASES)

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.left():.3f}s left)"


class _Left(float):
    """A phase's timeout as httpcore hands it to the backend, still knowing its deadline."""

    __slots__ = ("deadline",)
    deadline: Deadline

    def __new__(cls, seconds: float, deadline: Deadline) -> _Left:
        left = super().__new__(cls, seconds)
        left.deadline = deadline
        return left


class ExchangeTimeout(httpx.TimeoutException):
    """The whole exchange did not end by its deadline (raised by `within`)."""


def with_deadline(request: httpx.Request, seconds: float) -> httpx.Request:
    """`request`, bound to end within `seconds` from now, every phase of it."""
    request.extensions["timeout"] = Deadline(seconds)
    return request


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """An operation's timeout: what its request's deadline leaves, if it has one."""
    if not isinstance(timeout, _Left):
        return timeout
    deadline = timeout.deadline
    left = deadline.left()
    if left <= 0:
        raise error(f"the exchange's deadline ({deadline.seconds:g}s) has passed")
    return left


async def within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, cancelled and raising `ExchangeTimeout` after `seconds` (None: no bound).

    `asyncio.timeout` (3.11+) only schedules a cancellation; `wait_for` also needs a task, which
    costs a governance call some 25 µs more, so it is only the fallback.
    """
    if seconds is None:
        return await awaitable
    bound = max(_NO_TIME_S, seconds)
    if sys.version_info >= (3, 11):
        scope = asyncio.timeout(bound)
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if not scope.expired():
                raise  # the awaitable's own error, not our deadline
    else:
        try:
            return await asyncio.wait_for(awaitable, bound)
        except asyncio.TimeoutError:
            pass
    raise ExchangeTimeout(f"no complete answer within {seconds:g}s")


# --- the network backends: every socket operation ends by its request's deadline -------------


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE) or (0,):
            piece = buffer[start : start + _WRITE_PIECE]
            self._inner.write(piece, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, bound))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self.inner.connect_tcp(host, port, bound, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self.inner.connect_unix_socket(path, bound, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE) or (0,):
            piece = buffer[start : start + _WRITE_PIECE]
            await self._inner.write(piece, _bounded(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, bound))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        stream = await self.inner.connect_tcp(host, port, bound, local_address, socket_options)
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        bound = _bounded(timeout, httpcore.ConnectTimeout)
        return _AsyncStream(await self.inner.connect_unix_socket(path, bound, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


_HttpClient = TypeVar("_HttpClient", httpx.Client, httpx.AsyncClient)


def bound_by_deadlines(client: _HttpClient) -> _HttpClient:
    """`client`, its own connection pools' network I/O bounded by each request's `Deadline`.

    httpx offers no argument for a network backend, so this reaches into its transports'
    pools (`HTTPTransport._pool`, each proxy mount's too, an `httpx.HTTPTransport` the
    application passed in as well: requests without a `Deadline` pass through unchanged) and
    wraps their backend. A transport of another kind (the embedded platform, a mock, a wrapper)
    is left alone; `within` and the `Deadline` mapping still bound what they can. Returns
    `client` for chaining. Idempotent; a pool that is not shaped as expected is skipped, never
    broken (and `is_bounded` lets a test notice).
    """
    for pool in _pools(client):
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, _Backend | _AsyncBackend):
            continue
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = _Backend(backend)
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = _AsyncBackend(backend)
    return client


def is_bounded(client: httpx.Client | httpx.AsyncClient) -> bool:
    """Whether every connection pool of `client` is bounded by deadlines (and it has one)."""
    pools = _pools(client)
    return bool(pools) and all(
        isinstance(getattr(pool, "_network_backend", None), _Backend | _AsyncBackend)
        for pool in pools
    )


def _pools(client: httpx.Client | httpx.AsyncClient) -> list[Any]:
    """The httpcore pools of the transports `client` routes through (none for other kinds)."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    return [pool for t in transports if (pool := getattr(t, "_pool", None)) is not None]
