"""Flask binding: gate a view on an agent permission that the Tracengent platform decides.

    from flask import Flask
    from tracengent.integrations.flask import install_tracengent, require_agent_permission

    app = Flask(__name__)
    install_tracengent(app, client)  # a TracengentClient

    @app.post("/refunds")
    @require_agent_permission("payments:refund")
    def refund(): ...

A denied request is answered 403 with exactly `{"error": "forbidden", "permission": ...,
"reason": ...}` and the view does not run. Governance fails closed: a platform that cannot be
asked is a deny whose reason names the cause, and a decision still waiting for a person is
answered at once (a request is not held open while someone decides) with the approval id in the
reason. The allow decision, with its obligations, is `flask.g.tracengent_decision` in the view.

Flask serves a request on a thread, so the binding takes the sync `TracengentClient`; an
`AsyncTracengentClient` is refused where it is handed over, not at the first request.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

try:
    from flask import Flask, Request, Response, current_app, g, jsonify, request
except ImportError as error:  # pragma: no cover - exercised in a subprocess without Flask
    raise ImportError(
        'tracengent.integrations.flask needs Flask: pip install "tracengent[flask]"'
    ) from error

from .._approval_handle import ApprovalHandle
from .._approvals import ApprovalPendingException
from .._async_client import AsyncTracengentClient
from .._client import TracengentClient
from .._enforcement import Enforcement, check_mode, shadowed
from .._errors import NotAuthorizedException
from ._pending import HANDLE_HEADER, approved, held_body, pending_answer, retry_after

__all__ = ["install_tracengent", "require_agent_permission"]

_EXT_KEY = "tracengent"

F = TypeVar("F", bound=Callable[..., Any])

#: The authorize context: fixed, or computed from the request (None: no context).
RequestContext = Mapping[str, Any] | Callable[[Request], Mapping[str, Any] | None] | None


def install_tracengent(app: Flask, client: TracengentClient) -> None:
    """Make `client` the one `require_agent_permission` uses for this app's views."""
    _refuse_async(client)
    app.extensions[_EXT_KEY] = client


def require_agent_permission(
    permission: str,
    *,
    client: TracengentClient | None = None,
    context: RequestContext = None,
    wait: bool = True,
    enforcement: Enforcement | None = None,
) -> Callable[[F], F]:
    """A view decorator that runs the view only if the agent may do `permission`.

    `client` overrides the installed one. `context` goes with the question (e.g. `{"amount":
    280, "currency": "EUR"}`), or is computed per request by a function of `flask.request`. An
    allow whose `maxAmount` obligation the context's amount exceeds is a deny, as in
    `ensure_authorized`. Put it below `@app.route` so the route registers the guarded view.
    With `wait=False` a decision waiting for a person is answered 202 (`{"status":
    "pending_approval", "approvalId", "handle"}` and `Retry-After`); the same request sent again
    with the handle in the `Tracengent-Approval` header runs the view once the approval is given,
    if it is the call the approval was for (`resume_approval`).
    In shadow mode (the client's `enforcement` option, or `enforcement=` here) a refusal is
    recorded as what it would have done and the view runs.
    """
    if enforcement is not None:
        check_mode(enforcement, "require_agent_permission(enforcement=...)")
    if client is not None:
        _refuse_async(client)

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):  # Flask runs it on a loop of its own per request

            @functools.wraps(view)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                denied = _deny_or_none(permission, client, context, wait, enforcement)
                return denied if denied is not None else await view(*args, **kwargs)

            return cast(F, guarded_async)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            denied = _deny_or_none(permission, client, context, wait, enforcement)
            return denied if denied is not None else view(*args, **kwargs)

        return cast(F, guarded)

    return decorator


def _deny_or_none(
    permission: str,
    client: TracengentClient | None,
    context: RequestContext,
    wait: bool,
    enforcement: Enforcement | None,
) -> Response | None:
    """Ask the platform; the 403 answer when denied, None (and the decision in `g`) when allowed."""
    chosen = client if client is not None else current_app.extensions.get(_EXT_KEY)
    if chosen is None:
        raise RuntimeError(
            f"No Tracengent client for require_agent_permission({permission!r}): call "
            "tracengent.integrations.flask.install_tracengent(app, client) where the app is "
            "built, or pass client= to require_agent_permission(...)."
        )
    asked = context(request) if callable(context) else context
    if not wait and (handle := request.headers.get(HANDLE_HEADER)) is not None:
        return _resume(chosen, handle, permission, asked)
    decision = chosen.authorize(permission, asked)  # held to its obligations already
    if not wait and (held := pending_answer(decision, permission, asked)) is not None:
        return _answer(held[0], 202, {"Retry-After": retry_after(chosen.options)})
    if decision.allowed or shadowed(chosen._core, enforcement, "authorize", permission, decision):
        g.tracengent_decision = decision
        return None
    return _forbidden(permission, decision.denial_reason)


def _resume(
    client: TracengentClient, text: str, permission: str, context: Mapping[str, Any] | None
) -> Response | None:
    """The request came back with its approval's handle: release it, or answer why not."""
    try:
        handle = ApprovalHandle.parse(text)
        obligations = client.resume_approval(handle, permission, context, wait=False)
    except ApprovalPendingException as still:
        return _answer(held_body(still.handle), 202, {"Retry-After": retry_after(client.options)})
    except NotAuthorizedException as refused:
        return _forbidden(permission, refused.reason)
    except ValueError as bad:
        return _forbidden(permission, str(bad))
    g.tracengent_decision = approved(handle, obligations)
    return None


def _forbidden(permission: str, reason: str) -> Response:
    return _answer({"error": "forbidden", "permission": permission, "reason": reason}, 403)


def _answer(
    body: Mapping[str, str], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _refuse_async(client: object) -> None:
    if isinstance(client, AsyncTracengentClient):
        raise TypeError(
            "Flask serves each request on a thread, not on an event loop: hand the Flask "
            "binding a TracengentClient, not an AsyncTracengentClient."
        )
