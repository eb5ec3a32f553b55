"""Code written for tracengent 0.1.0 imports from 0.1.0's module paths and runs on 0.2.

0.1.0 laid its public API out in plain modules (`tracengent.client`, `tracengent.events`, ...);
0.2 moved the implementation into private modules and exports it from the package root. The old
paths are kept as alias modules that only re-export the root's objects: these tests import every
name 0.1.0 defined in them from its 0.1.0 path, check it is the 0.2 object itself, run a 0.1.0-style
agent through the alias paths against the embedded local platform, and check that the aliases stay
thin (no logic) and out of `import tracengent`.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import tracengent
from tracengent import _events
from tracengent.testing import PlatformRecorder

from ._tool_server import ToolServer
from .conftest import ROOT

# The public names of each module of tracengent 0.1.0, read from the published wheel
# (`pip download --no-deps tracengent==0.1.0`: tracengent-0.1.0-py3-none-any.whl, sha256
# dabe1a939488a1d88ae56a8417777802e9faaa827636b6266b9aad985992d94e). No 0.1.0 submodule had
# `__all__`; these are the classes, functions and constants each module defined at top level
# without a leading underscore. Left out: names a module merely imported (PEP 8: imported names
# are an implementation detail; `from tracengent.client import AuthDecision` happened to work),
# the `logger` of dispatcher/token_provider/trace and the `T` TypeVars of events/tool_gate/trace.
# Each name maps to the package root name it now is (`redaction.apply` was exported by the 0.1.0
# root as `apply_redactions` already).
PUBLIC_010: dict[str, dict[str, str]] = {
    "client": {"TracengentClient": "TracengentClient", "new_id": "new_id"},
    "options": {
        "TracengentConfigError": "TracengentConfigError",
        "TracengentOptions": "TracengentOptions",
    },
    "events": {
        "Actor": "Actor",
        "AgentEvent": "AgentEvent",
        "EventStatuses": "EventStatuses",
        "EventTypes": "EventTypes",
        "LlmCallResult": "LlmCallResult",
        "Money": "Money",
        "Usage": "Usage",
    },
    "authorization": {
        "AuthDecision": "AuthDecision",
        "AuthObligations": "AuthObligations",
        "NotAuthorizedException": "NotAuthorizedException",
    },
    "delegation": {
        "DelegatedSession": "DelegatedSession",
        "DelegationException": "DelegationException",
    },
    "dispatcher": {},
    "gateway": {"GatewayTransport": "GatewayTransport", "governed_client": "governed_client"},
    "redaction": {
        "MASK_TOKEN": "MASK_TOKEN",
        "Redaction": "Redaction",
        "apply": "apply_redactions",
    },
    "token_provider": {"AgentTokenProvider": "AgentTokenProvider"},
    "tool_gate": {"ToolGate": "ToolGate", "ToolGuardResult": "ToolGuardResult"},
    "tool_governance": {
        "ToolDecision": "ToolDecision",
        "ToolDeniedException": "ToolDeniedException",
        "ToolPendingApprovalException": "ToolPendingApprovalException",
    },
    "trace": {"AgentTrace": "AgentTrace"},
    "trace_context": {"current_trace": "current_trace"},
    "tracking": {"TrackingTransport": "TrackingTransport", "tracked_client": "tracked_client"},
}
# 0.1.0 names that are not root names in 0.2, and the 0.2 object each alias hands out.
NOT_AT_ROOT: dict[tuple[str, str], object] = {
    ("events", "Number"): _events.Number,  # `float | int | Decimal`, unchanged
}
# 0.1.0 names deliberately not provided: no 0.2 object behaves like them (see the module's
# docstring). `dispatcher.EventDispatcher(options, http, auth)` needed the private
# `_auth.AgentAuth` and had start()/stop(); 0.2's private dispatcher has neither.
NO_EQUIVALENT: dict[str, tuple[str, ...]] = {"dispatcher": ("EventDispatcher",)}

ALIASES = tuple(f"tracengent.{module}" for module in PUBLIC_010)
NAMES = [(module, name) for module, names in PUBLIC_010.items() for name in names] + list(
    NOT_AT_ROOT
)
PACKAGE = ROOT / "tracengent"


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_every_010_name_imports_from_its_010_path_as_the_02_object(module: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from tracengent.{module} import {name}", namespace)  # the statement 0.1.0 code has
    expected = NOT_AT_ROOT.get((module, name))
    if expected is None:
        expected = getattr(tracengent, PUBLIC_010[module][name])
    assert namespace[name] is expected


@pytest.mark.parametrize("module", list(PUBLIC_010))
def test_each_alias_exports_exactly_the_010_names_and_says_what_it_is(module: str) -> None:
    alias = importlib.import_module(f"tracengent.{module}")
    wanted = set(PUBLIC_010[module]) | {n for m, n in NOT_AT_ROOT if m == module}
    assert set(alias.__all__) == wanted
    assert (alias.__doc__ or "").startswith(
        f"0.1.0 compatibility alias for ``tracengent.{module}``"
    )
    for name in NO_EQUIVALENT.get(module, ()):
        assert name in (alias.__doc__ or "")  # the docstring says why it is missing
        with pytest.raises(ImportError):
            exec(f"from tracengent.{module} import {name}", {})


def test_redaction_apply_is_callable_as_010_called_it() -> None:
    import tracengent.redaction
    from tracengent.redaction import MASK_TOKEN, Redaction

    body = '{"amount":40,"card":"4242424242424242","cvc":"123"}'
    rules = [Redaction("$.card"), Redaction("$.cvc", "mask")]
    assert tracengent.redaction.apply(body, rules) == f'{{"amount":40,"cvc":"{MASK_TOKEN}"}}'


def test_a_010_agent_runs_through_the_alias_paths_on_the_local_platform(
    tracengent_platform: PlatformRecorder,
) -> None:
    from tracengent.authorization import AuthDecision, NotAuthorizedException
    from tracengent.client import TracengentClient, new_id
    from tracengent.events import Actor, AgentEvent, EventStatuses, EventTypes, LlmCallResult, Money
    from tracengent.gateway import governed_client
    from tracengent.options import TracengentOptions
    from tracengent.token_provider import AgentTokenProvider
    from tracengent.tool_gate import ToolGuardResult
    from tracengent.tool_governance import ToolDeniedException
    from tracengent.trace import AgentTrace
    from tracengent.trace_context import current_trace
    from tracengent.tracking import tracked_client

    # 0.1.0 had no TracengentOptions.local(): its code spells the options out.
    options = TracengentOptions(
        agent_id="demo-agent",
        base_url="local",
        client_id="key_demo",
        client_secret="ags_demo",
        ingest_key="agk_demo",
    )
    event_id = new_id("evt")
    with ToolServer() as tool, TracengentClient(options) as client:
        assert isinstance(client.token_provider, AgentTokenProvider)
        client.record(
            AgentEvent(
                name="compat.record", event_id=event_id, cost=Money.eur(2), actor=Actor("u1")
            )
        )
        with client.begin_trace("0.1.0 code on 0.2", actor_user_id="u1") as trace:
            assert isinstance(trace, AgentTrace)
            assert current_trace() is trace
            trace.step("pick a flight")
            answer = trace.track_llm_call(
                "plan", lambda: LlmCallResult("LIS", tokens=12, model="m"), estimated_tokens=100
            )
            decision = client.authorize("flights:book")
            with pytest.raises(NotAuthorizedException):  # payments:refund max_amount is 1000
                client.ensure_authorized("payments:refund", {"amount": 2000, "currency": "EUR"})
            guard = client.tools.authorize_mcp("search_flights", {"to": "LIS"})
            with governed_client(client) as http:
                governed = http.get(tool.url() + "/v1/ping").json()
                with pytest.raises(ToolDeniedException):
                    http.get("https://exfiltrate.invalid/export")  # not on the egress allowlist
            with tracked_client(client) as http:
                http.get(tool.url() + "/v1/status")
    assert answer == "LIS"
    assert isinstance(decision, AuthDecision) and decision.allowed
    assert isinstance(guard, ToolGuardResult) and guard.allowed
    assert governed == {"ok": True}
    assert [path for _, path, _, _ in tool.received] == ["/v1/ping", "/v1/status"]

    assert [
        (e["eventId"], e["name"]) for e in tracengent_platform.events(name="compat.record")
    ] == [(event_id, "compat.record")]
    in_trace = tracengent_platform.events(trace.trace_id)
    assert [(e["type"], e["name"], e["status"]) for e in in_trace] == [
        (EventTypes.DECISION, "pick a flight", EventStatuses.SUCCESS),
        (EventTypes.LLM_CALL, "plan", EventStatuses.SUCCESS),
        (EventTypes.TOOL_CALL, "GET 127.0.0.1/v1/status", EventStatuses.SUCCESS),
    ]
    decided = tracengent_platform.decisions(trace.trace_id)
    assert [(d.permission, d.status) for d in decided] == [
        ("llm:call", "allowed"),
        ("flights:book", "allowed"),
        ("payments:refund", "denied"),
        ("flights:search", "allowed"),
        (None, "allowed"),
        (None, "denied"),
    ]
    [summary] = [t for t in tracengent_platform.traces() if t.trace_id == trace.trace_id]
    assert summary.root_request == "0.1.0 code on 0.2"
    assert summary.status == "completed"  # what 0.1.0 sent on a clean exit too


def _alias_files() -> list[Path]:
    return [PACKAGE / f"{module}.py" for module in PUBLIC_010]


@pytest.mark.parametrize("path", _alias_files(), ids=lambda p: p.stem)
def test_an_alias_module_is_only_a_docstring_imports_and_all(path: Path) -> None:
    """No logic, and imports only from the package root or its private modules: an alias can
    neither drift from the 0.2 behaviour nor join an import cycle."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    docstring, *statements = body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    exported: set[str] = set()
    for node in statements:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            assert node.module in ("__future__", "tracengent") or node.module.startswith(
                "tracengent._"
            ), ast.unparse(node)
            if node.module != "__future__":
                exported |= {a.asname or a.name for a in node.names}
        else:
            assert isinstance(node, (ast.Assign, ast.AnnAssign)), ast.unparse(node)
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            assert isinstance(target, ast.Name) and target.id == "__all__", ast.unparse(node)
            assert isinstance(node.value, ast.List), ast.unparse(node)
    assert exported == set(importlib.import_module(f"tracengent.{path.stem}").__all__)


def test_nothing_in_the_package_imports_an_alias_module() -> None:
    """The aliases are for user code only: a module of the package that imported one would make
    `import tracengent` pay for it and could close a cycle through the root."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in _alias_files():
            continue
        package = path.relative_to(ROOT).parts[:-1]  # what `from .` means in this file
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(package[: len(package) - node.level + 1]) if node.level else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                targets = [module, *(f"{module}.{a.name}" for a in node.names)]
            offenders += [f"{path.relative_to(ROOT)}: {t}" for t in targets if t in ALIASES]
    assert offenders == []


def test_import_tracengent_and_its_whole_root_surface_load_no_alias() -> None:
    code = (
        "import sys, tracengent\n"
        "for name in tracengent.__all__: getattr(tracengent, name)\n"
        f"print(sorted(m for m in {ALIASES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
