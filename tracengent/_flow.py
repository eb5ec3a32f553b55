"""Flows: platform conversations written once, run by a sync or an async driver.

A flow is a generator that yields what it needs done (`Send` a request, `Sleep`, `GetToken`,
`Call` the user's function) and receives the result; it returns its outcome. Every decision (what to send, what an answer
means, when to retry or give up) lives in the flow, so the sync and the async client only move
bytes and sleep: a fix to a flow is a fix for both.

A transport error raised by `Send` is thrown into the flow at its `yield`, so the flow decides
what failure means (a deny, a drop, a retry).

A step's `timeout` is a deadline for the whole exchange, however the platform dribbles its
answer: both drivers send the request with a `Deadline` (see `_deadline`), and the async one
also awaits the exchange under `within`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ._deadline import with_deadline, within

if TYPE_CHECKING:
    from ._auth import AgentTokenProvider

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Send `request` and read its whole answer, all of it within `timeout` seconds."""

    request: httpx.Request
    timeout: float


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class GetToken:
    """The current bearer token; with `stale`, a fresh one unless someone already replaced it.

    `timeout` bounds a fetch the way it bounds the call that needs the token.
    """

    stale: str | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Run the user's own function (`work()`; the async driver awaits what it returns when that
    is awaitable) and send back its result; what it raises is thrown into the flow at its yield.

    This is how "decide, run the user's function, record" is written once for both clients.
    """

    work: Callable[[], Any]


Step = Call | Send | Sleep | GetToken
Flow = Generator[Step, Any, T]


class TokenUnavailable(Exception):
    """No bearer token could be had (token endpoint unreachable or credentials refused)."""


def authed(
    build: Callable[[str | None], httpx.Request], timeout: float, uses_token: bool
) -> Flow[httpx.Response]:
    """Send `build(token)`; on a 401 get a fresh token and resend once (API.md).

    `timeout` is one deadline for all of it: a slow token fetch leaves less time for the call.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise httpx.TimeoutException(f"no answer within {timeout:g}s")
        return remaining

    token = (yield GetToken(timeout=left())) if uses_token else None
    response: httpx.Response = yield Send(build(token), left())
    if response.status_code == 401 and uses_token:
        token = yield GetToken(stale=token, timeout=left())
        response = yield Send(build(token), left())
    return response


@dataclass(frozen=True, slots=True)
class _Returned:
    value: Any


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the last step gave the flow: its result, or the error to throw in at its yield."""

    value: Any = None
    error: BaseException | None = None

    def resume(self, flow: Flow[Any]) -> Step | _Returned:
        """The flow's next step, or `_Returned` once it is done."""
        try:
            return flow.throw(self.error) if self.error is not None else flow.send(self.value)
        except StopIteration as done:
            return _Returned(done.value)


def run_sync(
    flow: Flow[T],
    send: Callable[[httpx.Request], httpx.Response],
    tokens: AgentTokenProvider | None,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Drive `flow` with blocking I/O (`send` is usually `httpx.Client.send`)."""
    outcome = _Outcome()
    while not isinstance(step := outcome.resume(flow), _Returned):
        try:
            outcome = _Outcome(_perform_sync(step, send, tokens, sleep))
        except Exception as exc:  # noqa: BLE001 - the flow decides what a failure means
            outcome = _Outcome(error=exc)
    return step.value  # type: ignore[no-any-return]


def _perform_sync(
    step: Step,
    send: Callable[[httpx.Request], httpx.Response],
    tokens: AgentTokenProvider | None,
    sleep: Callable[[float], Any],
) -> Any:
    if isinstance(step, Call):
        return step.work()
    if isinstance(step, Send):
        return send(with_deadline(step.request, step.timeout))
    if isinstance(step, Sleep):
        return sleep(step.seconds)
    return _token_now(tokens, step) or _token_sync(tokens, step)


async def run_async(flow: Flow[T], http: httpx.AsyncClient, tokens: AgentTokenProvider | None) -> T:
    """Drive `flow` without blocking the event loop (token refreshes run in a worker thread)."""
    outcome = _Outcome()
    while not isinstance(step := outcome.resume(flow), _Returned):
        try:
            outcome = _Outcome(await _perform_async(step, http, tokens))
        except Exception as exc:  # noqa: BLE001 - the flow decides what a failure means
            outcome = _Outcome(error=exc)
    return step.value  # type: ignore[no-any-return]


async def _perform_async(
    step: Step, http: httpx.AsyncClient, tokens: AgentTokenProvider | None
) -> Any:
    if isinstance(step, Call):
        return await resolve(step.work())
    if isinstance(step, Send):
        request = with_deadline(step.request, step.timeout)
        return await within(step.timeout, _exchange(http, request))
    if isinstance(step, Sleep):
        return await asyncio.sleep(step.seconds)
    return _token_now(tokens, step) or await within(
        step.timeout, asyncio.to_thread(_token_sync, tokens, step)
    )


async def _exchange(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """The request sent and its answer read to the end: one unit for `within` to bound."""
    response = await http.send(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


def _token_now(tokens: AgentTokenProvider | None, step: GetToken) -> str | None:
    """The cached token, when the step can have it without I/O (both drivers ask this first)."""
    return tokens.cached() if tokens is not None and step.stale is None else None


def _token_sync(tokens: AgentTokenProvider | None, step: GetToken) -> str:
    if tokens is None:
        raise TokenUnavailable("no client credentials configured")
    if step.stale is not None:
        tokens.invalidate(step.stale)
    token = tokens.get_token(step.timeout)
    if token is None:
        raise TokenUnavailable("the token endpoint refused the client credentials (401)")
    return token


async def resolve(value: T | Awaitable[T]) -> T:
    """`value`, awaited if it is awaitable: user callables may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value
