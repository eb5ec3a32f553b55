"""FastAPI and Flask bindings: allow, deny with the exact body, fail closed, never block the loop.

Each test drives a real framework app through its own test client, with a real Tracengent client
whose platform is the in-process `RecordingPlatform`.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask, g, request as flask_request

from tracengent import AsyncTracengentClient, AuthDecision, TracengentClient, TracengentOptions
from tracengent.integrations import fastapi as tg_fastapi, flask as tg_flask

from ._recording import RecordingPlatform

with warnings.catch_warnings():  # newer Starlette deprecates its httpx-based TestClient
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
    from fastapi.testclient import TestClient

PERMISSION = "payments:refund"
ALLOW = {"allowed": True, "status": "allowed", "reason": "ok", "decisionId": "dec_1"}
DENY = {"allowed": False, "status": "denied", "reason": "refunds are paused", "decisionId": "dec_9"}
FORBIDDEN = {"error": "forbidden", "permission": PERMISSION, "reason": "refunds are paused"}

AnyClient = TracengentClient | AsyncTracengentClient


def answer(body: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(status, json=body)


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
def make_client(platform: RecordingPlatform) -> Iterator[Callable[..., Any]]:
    """Builds sync or async clients on the recording platform; closes them after the test."""
    made: list[AnyClient] = []

    def make(kind: str = "sync", transport: Any = None) -> AnyClient:
        options = TracengentOptions(
            agent_id="demo-agent", ingest_key="agk_demo", authorize_timeout_s=1.0
        )
        transport = transport if transport is not None else platform.transport
        client: AnyClient = (
            TracengentClient(options, transport=transport)
            if kind == "sync"
            else AsyncTracengentClient(options, transport=transport)
        )
        made.append(client)
        return client

    yield make
    for client in made:
        if isinstance(client, AsyncTracengentClient):
            asyncio.run(client.close(timeout=1))
        else:
            client.close(timeout=1)


# --- FastAPI ----------------------------------------------------------------------------------


def fastapi_app(installed: AnyClient | None, **guard: Any) -> tuple[FastAPI, list[str]]:
    """An app with POST /refunds guarded by PERMISSION; `ran` lists the route's runs."""
    app = FastAPI()
    if installed is not None:
        tg_fastapi.install_tracengent(app, installed)
    ran: list[str] = []
    gate = tg_fastapi.require_agent_permission(PERMISSION, **guard)

    @app.post("/refunds")
    def refund(decision: AuthDecision = Depends(gate)) -> dict[str, str]:  # noqa: B008
        ran.append("refund")
        return {"status": "refunded", "decision": decision.decision_id}

    return app, ran


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fastapi_allowed_runs_the_route_with_the_decision(
    kind: str, platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    app, ran = fastapi_app(make_client(kind))
    response = TestClient(app).post("/refunds")
    assert response.status_code == 200
    assert response.json() == {"status": "refunded", "decision": "dec_1"}
    assert ran == ["refund"]
    assert platform.sent("/v1/authorize") == [{"permission": PERMISSION}]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fastapi_denied_is_403_with_exactly_the_body_and_the_route_does_not_run(
    kind: str, platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    platform.script("/v1/authorize", answer(DENY))
    app, ran = fastapi_app(make_client(kind))
    response = TestClient(app).post("/refunds")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.json() == FORBIDDEN
    assert ran == []


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (lambda _r: httpx.Response(503, text="maintenance"), "answered 503: maintenance"),
        (unreachable, "unreachable"),
        (lambda _r: httpx.Response(200, text="<html>"), "not a valid AuthorizeResponse"),
    ],
    ids=["503", "unreachable", "unreadable"],
)
def test_fastapi_fails_closed_with_a_reason_naming_the_cause(
    kind: str,
    failure: Callable[[httpx.Request], httpx.Response],
    cause: str,
    platform: RecordingPlatform,
    make_client: Callable[..., AnyClient],
) -> None:
    platform.script("/v1/authorize", failure)
    app, ran = fastapi_app(make_client(kind))
    response = TestClient(app).post("/refunds")
    assert response.status_code == 403
    body = response.json()
    assert set(body) == {"error", "permission", "reason"}
    assert (body["error"], body["permission"]) == ("forbidden", PERMISSION)
    assert body["reason"].startswith("authorize failed") and cause in body["reason"]
    assert ran == []


def test_fastapi_without_a_client_raises_a_runtime_error_saying_how_to_install_one() -> None:
    app, ran = fastapi_app(None)
    with pytest.raises(RuntimeError, match=r"install_tracengent\(app, client\)") as raised:
        TestClient(app, raise_server_exceptions=True).post("/refunds")
    assert "client=" in str(raised.value) and PERMISSION in str(raised.value)
    assert ran == []


def test_fastapi_explicit_client_is_used_without_install(
    platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    installed, explicit = RecordingPlatform(), make_client("sync")
    app, ran = fastapi_app(make_client("sync", installed.transport), client=explicit)
    assert TestClient(app).post("/refunds").status_code == 200
    assert ran == ["refund"]
    assert platform.sent("/v1/authorize") == [{"permission": PERMISSION}]
    assert installed.sent("/v1/authorize") == []


def test_fastapi_explicit_client_needs_the_handler_for_the_exact_body(
    platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    platform.script("/v1/authorize", answer(DENY), answer(DENY))
    app, ran = fastapi_app(None, client=make_client("sync"))
    # Without the handler the denial is still a 403, in FastAPI's own `detail` wrapping.
    bare = TestClient(app).post("/refunds")
    assert (bare.status_code, bare.json()) == (403, {"detail": FORBIDDEN})

    app, ran = fastapi_app(None, client=make_client("sync"))
    app.add_exception_handler(
        tg_fastapi.TracengentForbidden, tg_fastapi.tracengent_forbidden_handler
    )
    handled = TestClient(app).post("/refunds")
    assert (handled.status_code, handled.json()) == (403, FORBIDDEN)
    assert ran == []


def test_fastapi_a_pending_decision_is_403_at_once_naming_the_approval(
    platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    pending = {"allowed": False, "status": "pending_approval", "reason": "over 300"}
    platform.script("/v1/authorize", answer({**pending, "approvalId": "apr_1"}))
    app, ran = fastapi_app(make_client("sync"))
    response = TestClient(app).post("/refunds")
    assert response.status_code == 403
    assert response.json()["reason"] == "waiting for approval apr_1: over 300"
    assert ran == []
    assert [r for r in platform.requests if r.url.path.startswith("/v1/approvals/")] == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fastapi_context_from_an_async_function_of_the_request_is_sent_and_enforced(
    kind: str, platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    async def amount_of(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"amount": body["amount"], "currency": "EUR"}

    capped = {**ALLOW, "obligations": {"maxAmount": 100, "currency": "EUR"}}
    platform.script("/v1/authorize", answer(capped), answer(capped))
    app, ran = fastapi_app(make_client(kind), context=amount_of)
    client = TestClient(app)

    assert client.post("/refunds", json={"amount": 80}).status_code == 200
    over = client.post("/refunds", json={"amount": 280})
    assert over.status_code == 403
    assert over.json()["reason"] == "amount 280 EUR exceeds the decision's maxAmount 100 EUR"
    assert ran == ["refund"]
    assert [sent["context"] for sent in platform.sent("/v1/authorize")] == [
        {"amount": 80, "currency": "EUR"},
        {"amount": 280, "currency": "EUR"},
    ]


def test_fastapi_fixed_and_sync_context(
    platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    client = make_client("sync")
    fixed, _ = fastapi_app(client, context={"resource": "order-7"})
    per_request, _ = fastapi_app(
        client, context=lambda request: {"resource": request.query_params["order"]}
    )
    assert TestClient(fixed).post("/refunds").status_code == 200
    assert TestClient(per_request).post("/refunds?order=order-9").status_code == 200
    assert [sent["context"] for sent in platform.sent("/v1/authorize")] == [
        {"resource": "order-7"},
        {"resource": "order-9"},
    ]


class _HeldAsyncTransport(httpx.AsyncBaseTransport):
    """Answers authorize once `release` is set, waiting on the loop without blocking it."""

    def __init__(self, asked: threading.Event, release: threading.Event) -> None:
        self.asked, self.release = asked, release

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.asked.set()
        for _ in range(200):
            if self.release.is_set():
                return httpx.Response(200, json=ALLOW)
            await asyncio.sleep(0.01)
        return httpx.Response(200, json=DENY)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fastapi_the_loop_serves_other_requests_while_authorize_waits(
    kind: str, platform: RecordingPlatform, make_client: Callable[..., AnyClient]
) -> None:
    """The platform answers only after /ping ran: a blocked loop would never serve /ping."""
    asked, release = threading.Event(), threading.Event()
    if kind == "sync":

        def held(_request: httpx.Request) -> httpx.Response:
            asked.set()
            return httpx.Response(200, json=ALLOW if release.wait(2) else DENY)

        platform.script("/v1/authorize", held)
        client = make_client("sync")
    else:
        client = make_client("async", _HeldAsyncTransport(asked, release))
    app, ran = fastapi_app(client)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        release.set()
        return {"pong": True}

    with TestClient(app) as http, ThreadPoolExecutor(1) as pool:
        refund = pool.submit(http.post, "/refunds")
        assert asked.wait(2), "authorize was never asked"
        assert http.get("/ping").status_code == 200
        assert refund.result(timeout=5).status_code == 200
    assert ran == ["refund"]


# --- Flask ------------------------------------------------------------------------------------


def flask_app(installed: TracengentClient | None, **guard: Any) -> tuple[Flask, list[str]]:
    """An app with POST /refunds guarded by PERMISSION; `ran` lists the view's runs."""
    app = Flask(__name__)
    app.config["TESTING"] = True  # exceptions reach the test instead of becoming a 500
    if installed is not None:
        tg_flask.install_tracengent(app, installed)
    ran: list[str] = []

    @app.post("/refunds")
    @tg_flask.require_agent_permission(PERMISSION, **guard)
    def refund() -> dict[str, str]:
        ran.append("refund")
        return {"status": "refunded", "decision": g.tracengent_decision.decision_id}

    return app, ran


def test_flask_allowed_runs_the_view_with_the_decision(
    platform: RecordingPlatform, make_client: Callable[..., TracengentClient]
) -> None:
    app, ran = flask_app(make_client("sync"))
    response = app.test_client().post("/refunds")
    assert response.status_code == 200
    assert response.get_json() == {"status": "refunded", "decision": "dec_1"}
    assert ran == ["refund"]
    assert platform.sent("/v1/authorize") == [{"permission": PERMISSION}]


def test_flask_denied_is_403_with_exactly_the_body_and_the_view_does_not_run(
    platform: RecordingPlatform, make_client: Callable[..., TracengentClient]
) -> None:
    platform.script("/v1/authorize", answer(DENY))
    app, ran = flask_app(make_client("sync"))
    response = app.test_client().post("/refunds")
    assert response.status_code == 403
    assert response.mimetype == "application/json"
    assert response.get_json() == FORBIDDEN
    assert ran == []


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (lambda _r: httpx.Response(503, text="maintenance"), "answered 503: maintenance"),
        (unreachable, "unreachable"),
    ],
    ids=["503", "unreachable"],
)
def test_flask_fails_closed_with_a_reason_naming_the_cause(
    failure: Callable[[httpx.Request], httpx.Response],
    cause: str,
    platform: RecordingPlatform,
    make_client: Callable[..., TracengentClient],
) -> None:
    platform.script("/v1/authorize", failure)
    app, ran = flask_app(make_client("sync"))
    response = app.test_client().post("/refunds")
    assert response.status_code == 403
    body = response.get_json()
    assert set(body) == {"error", "permission", "reason"}
    assert (body["error"], body["permission"]) == ("forbidden", PERMISSION)
    assert body["reason"].startswith("authorize failed") and cause in body["reason"]
    assert ran == []


def test_flask_without_a_client_raises_a_runtime_error_saying_how_to_install_one() -> None:
    app, ran = flask_app(None)
    with pytest.raises(RuntimeError, match=r"install_tracengent\(app, client\)") as raised:
        app.test_client().post("/refunds")
    assert "client=" in str(raised.value) and PERMISSION in str(raised.value)
    assert ran == []


def test_flask_explicit_client_is_used_without_install(
    platform: RecordingPlatform, make_client: Callable[..., TracengentClient]
) -> None:
    platform.script("/v1/authorize", answer(ALLOW), answer(DENY))
    app, ran = flask_app(None, client=make_client("sync"))
    http = app.test_client()
    assert http.post("/refunds").status_code == 200
    denied = http.post("/refunds")
    assert (denied.status_code, denied.get_json()) == (403, FORBIDDEN)
    assert ran == ["refund"]
    assert len(platform.sent("/v1/authorize")) == 2


def test_flask_refuses_an_async_client_where_it_is_handed_over(
    make_client: Callable[..., AnyClient],
) -> None:
    async_client = make_client("async")
    with pytest.raises(TypeError, match="TracengentClient, not an AsyncTracengentClient"):
        tg_flask.install_tracengent(Flask(__name__), async_client)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TracengentClient, not an AsyncTracengentClient"):
        tg_flask.require_agent_permission(PERMISSION, client=async_client)  # type: ignore[arg-type]


def test_flask_context_from_the_request_is_sent_and_enforced(
    platform: RecordingPlatform, make_client: Callable[..., TracengentClient]
) -> None:
    capped = {**ALLOW, "obligations": {"maxAmount": 100, "currency": "EUR"}}
    platform.script("/v1/authorize", answer(capped), answer(capped))

    def amount_of(request: Any) -> dict[str, Any]:
        assert request is flask_request  # the request being served
        return {"amount": request.get_json()["amount"], "currency": "EUR"}

    app, ran = flask_app(make_client("sync"), context=amount_of)
    http = app.test_client()
    assert http.post("/refunds", json={"amount": 80}).status_code == 200
    over = http.post("/refunds", json={"amount": 280})
    assert over.status_code == 403
    assert over.get_json()["reason"] == "amount 280 EUR exceeds the decision's maxAmount 100 EUR"
    assert ran == ["refund"]
    assert [sent["context"] for sent in platform.sent("/v1/authorize")] == [
        {"amount": 80, "currency": "EUR"},
        {"amount": 280, "currency": "EUR"},
    ]


def test_flask_an_async_view_stays_a_coroutine_and_is_guarded(
    platform: RecordingPlatform, make_client: Callable[..., TracengentClient]
) -> None:
    """Flask runs an async view on a loop of its own; the guard must await it, not return it."""
    platform.script("/v1/authorize", answer(ALLOW), answer(DENY))
    app = Flask(__name__)
    tg_flask.install_tracengent(app, make_client("sync"))
    ran: list[str] = []

    @tg_flask.require_agent_permission(PERMISSION)
    async def refund() -> dict[str, str]:
        ran.append("refund")
        return {"status": "refunded"}

    assert inspect.iscoroutinefunction(refund)
    with app.test_request_context("/refunds", method="POST"):
        assert asyncio.run(refund()) == {"status": "refunded"}
        denied = asyncio.run(refund())
    assert (denied.status_code, denied.get_json()) == (403, FORBIDDEN)
    assert ran == ["refund"]


# --- packaging --------------------------------------------------------------------------------


def test_importing_tracengent_imports_no_web_framework() -> None:
    script = (
        "import sys, tracengent, tracengent.integrations\n"
        "loaded = {'fastapi', 'flask', 'starlette', 'werkzeug'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_a_missing_framework_says_which_extra_to_install(framework: str) -> None:
    script = (
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"import tracengent.integrations.{framework}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"ImportError: tracengent.integrations.{framework} needs" in done.stderr
    assert f'pip install "tracengent[{framework}]"' in done.stderr
