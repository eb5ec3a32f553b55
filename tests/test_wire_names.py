"""No wire key or endpoint path of the Tracengent API is spelled by hand outside generated/.

schema/openapi.yaml is their one spelling: hand-written code takes keys from the generated
models' aliases (`tracengent/_wire.py`, `tracengent/platform/_wire.py`), paths from the generated
route table, and builds requests and answers with the generated code. This reads every string
constant of tracengent/ (docstrings apart: they may name what they describe) with `ast`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tracengent_api as api

ROOT = Path(__file__).resolve().parent.parent / "tracengent"
CAMEL_CASE = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+")

#: camelCase strings that are another library's names, not Tracengent's wire
NOT_OURS = {
    # the MCP SDK's CallToolResult fields, read from a result as a dict
    ("integrations/mcp.py", "isError"),
    ("integrations/mcp.py", "structuredContent"),
}


def _route_prefixes() -> set[str]:
    """Each route's path up to its first parameter: what an f-string would spell by hand."""
    return {route.path.split("{")[0] for route in api.routes.ROUTES}


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _spelled_by_hand(root: Path) -> list[str]:
    prefixes = _route_prefixes()
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if id(node) in docstrings:
                continue
            text = node.value
            if CAMEL_CASE.fullmatch(text) and (where, text) not in NOT_OURS:
                found.append(f"{where}:{node.lineno}: key {text!r}")
            for prefix in prefixes:
                if prefix in text:
                    found.append(f"{where}:{node.lineno}: path {prefix!r} in {text!r}")
    return found


def test_no_camel_case_key_or_route_path_is_spelled_by_hand() -> None:
    assert _spelled_by_hand(ROOT) == []


def test_the_scan_catches_a_key_and_a_path_but_not_a_docstring(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        '"""Reads "traceId" from /v1/authorize."""\n'
        'x = {"traceId": 1, "trace id": 2}\n'
        'y = f"/v1/approvals/{x}"\n'
    )
    assert _spelled_by_hand(tmp_path) == [
        "bad.py:2: key 'traceId'",
        "bad.py:3: path '/v1/approvals/' in '/v1/approvals/'",
    ]
