"""FastAPI binding: gate a route on an agent permission that the Tracengent platform decides.

    from fastapi import Depends, FastAPI
    from tracengent.integrations.fastapi import install_tracengent, require_agent_permission

    app = FastAPI()
    install_tracengent(app, client)  # a TracengentClient or an AsyncTracengentClient

    @app.post("/refunds", dependencies=[Depends(require_agent_permission("payments:refund"))])
    async def refund() -> dict[str, str]: ...

A denied request is answered 403 with exactly `{"error": "forbidden", "permission": ...,
"reason": ...}`. Governance fails closed: a platform that cannot be asked is a deny whose reason
names the cause, and a decision still waiting for a person is answered at once (a request is not
held open while someone decides) with the approval id in the reason.

Why an exception handler: a FastAPI dependency can stop a request only by raising, and FastAPI
answers an `HTTPException` as `{"detail": ...}`. So the dependency raises `TracengentForbidden`
and `install_tracengent` registers `tracengent_forbidden_handler`, which writes the body at the
top level. An app that passes `client=` and never calls `install_tracengent` should register the
handler itself (`app.add_exception_handler(TracengentForbidden, tracengent_forbidden_handler)`);
without it the denial is still a 403 (the exception is an `HTTPException`), wrapped in `detail`.

The dependency is a coroutine either way: an async client is awaited on the loop, a sync
client's blocking round trip runs in the threadpool, so the event loop never waits on the
platform. With a dependency parameter (`decision: AuthDecision = Depends(...)`) the route gets
the allow decision, and with it the obligations (e.g. fields to redact).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
except ImportError as error:  # pragma: no cover - exercised in a subprocess without FastAPI
    raise ImportError(
        'tracengent.integrations.fastapi needs FastAPI: pip install "tracengent[fastapi]"'
    ) from error

from .._approval_handle import ApprovalHandle
from .._approvals import ApprovalPendingException
from .._async_client import AsyncTracengentClient
from .._authorization import AuthDecision
from .._client import TracengentClient
from .._enforcement import Enforcement, check_mode, shadowed
from .._errors import NotAuthorizedException
from ._pending import HANDLE_HEADER, approved, held_body, pending_answer, retry_after

__all__ = [
    "TracengentForbidden",
    "TracengentPending",
    "install_tracengent",
    "require_agent_permission",
    "tracengent_forbidden_handler",
    "tracengent_pending_handler",
]

_STATE_KEY = "tracengent"

#: The authorize context: fixed, or computed from the request (sync or async; None: no context).
RequestContext = (
    Mapping[str, Any]
    | Callable[[Request], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None]
    | None
)


class TracengentForbidden(HTTPException):
    """The agent may not do `permission` now; answered 403 by `tracengent_forbidden_handler`.

    It is an `HTTPException` so that an app without the handler still answers 403, never 500.
    """

    def __init__(self, permission: str, reason: str, decision: AuthDecision) -> None:
        self.permission = permission
        self.reason = reason
        self.decision = decision
        super().__init__(status_code=403, detail=self.body)

    @property
    def body(self) -> dict[str, str]:
        """The 403 answer's JSON body, the same in every Tracengent binding."""
        return {"error": "forbidden", "permission": self.permission, "reason": self.reason}


class TracengentPending(HTTPException):
    """The decision waits for a person and the route asked not to wait (`wait=False`):
    answered 202 with the approval's handle and `Retry-After` by `tracengent_pending_handler`."""

    def __init__(self, body: dict[str, str], retry_after: str) -> None:
        self.body = body
        super().__init__(status_code=202, detail=body, headers={"Retry-After": retry_after})


async def tracengent_pending_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a `TracengentPending` with its body at the top level and its `Retry-After`."""
    if not isinstance(exc, TracengentPending):  # registered for TracengentPending only
        raise exc
    return JSONResponse(exc.body, status_code=202, headers=exc.headers)


async def tracengent_forbidden_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a `TracengentForbidden` with its body at the top level (not under `detail`)."""
    if not isinstance(exc, TracengentForbidden):  # registered for TracengentForbidden only
        raise exc
    return JSONResponse(exc.body, status_code=403)


def install_tracengent(app: FastAPI, client: TracengentClient | AsyncTracengentClient) -> None:
    """Make `client` the one `require_agent_permission` uses, and register the 403 handler.

    Call it when the app is built: Starlette fixes its exception handlers at the first request.
    """
    setattr(app.state, _STATE_KEY, client)
    app.add_exception_handler(TracengentForbidden, tracengent_forbidden_handler)
    app.add_exception_handler(TracengentPending, tracengent_pending_handler)


def require_agent_permission(
    permission: str,
    *,
    client: TracengentClient | AsyncTracengentClient | None = None,
    context: RequestContext = None,
    wait: bool = True,
    enforcement: Enforcement | None = None,
) -> Callable[[Request], Awaitable[AuthDecision]]:
    """A dependency that lets the request through only if the agent may do `permission`.

    `client` overrides the installed one. `context` goes with the question (e.g. `{"amount":
    280, "currency": "EUR"}`), or is computed per request by a function of the `Request`, sync
    (it runs on the loop: keep it cheap) or async (e.g. to read the JSON body). An allow whose
    `maxAmount` obligation the context's amount exceeds is a deny, as in `ensure_authorized`.
    Resolves to the allow decision; raises `TracengentForbidden` otherwise. With `wait=False` a
    decision waiting for a person is answered 202 (`TracengentPending`: `{"status":
    "pending_approval", "approvalId", "handle"}` and `Retry-After`); the same request sent again
    with the handle in the `Tracengent-Approval` header runs the route once the approval is
    given, if it is the call the approval was for (`resume_approval`). In shadow mode (the
    client's `enforcement` option, or `enforcement=` here) a refusal is recorded as what it would
    have done and the request goes on, resolving to the refusing decision.
    """
    if enforcement is not None:
        check_mode(enforcement, "require_agent_permission(enforcement=...)")

    async def dependency(request: Request) -> AuthDecision:
        chosen = client if client is not None else getattr(request.app.state, _STATE_KEY, None)
        if chosen is None:
            raise RuntimeError(
                f"No Tracengent client for require_agent_permission({permission!r}): call "
                "tracengent.integrations.fastapi.install_tracengent(app, client) where the app "
                "is built, or pass client= to require_agent_permission(...)."
            )
        asked = await _context_for(context, request)
        if not wait and (handle := request.headers.get(HANDLE_HEADER)) is not None:
            return await _resume(chosen, handle, permission, asked)
        if isinstance(chosen, AsyncTracengentClient):
            decision = await chosen.authorize(permission, asked)
        else:
            decision = await run_in_threadpool(chosen.authorize, permission, asked)
        if not wait and (held := pending_answer(decision, permission, asked)) is not None:
            raise TracengentPending(held[0], retry_after(chosen.options))
        if not decision.allowed and not shadowed(
            chosen._core, enforcement, "authorize", permission, decision
        ):
            raise TracengentForbidden(permission, decision.denial_reason, decision)
        return decision

    return dependency


async def _resume(
    client: TracengentClient | AsyncTracengentClient,
    text: str,
    permission: str,
    context: Mapping[str, Any] | None,
) -> AuthDecision:
    """The request came back with its approval's handle: release it, or answer why not."""
    try:
        handle = ApprovalHandle.parse(text)
        if isinstance(client, AsyncTracengentClient):
            obligations = await client.resume_approval(handle, permission, context, wait=False)
        else:
            obligations = await run_in_threadpool(
                functools.partial(client.resume_approval, wait=False), handle, permission, context
            )
    except ApprovalPendingException as still:
        raise TracengentPending(held_body(still.handle), retry_after(client.options)) from None
    except (NotAuthorizedException, ValueError) as refused:
        reason = refused.reason if isinstance(refused, NotAuthorizedException) else str(refused)
        raise TracengentForbidden(permission, reason, AuthDecision.deny(reason)) from None
    return approved(handle, obligations)


async def _context_for(context: RequestContext, request: Request) -> Mapping[str, Any] | None:
    if context is None or isinstance(context, Mapping):
        return context
    value = context(request)
    if value is None or isinstance(value, Mapping):
        return value
    return await value
