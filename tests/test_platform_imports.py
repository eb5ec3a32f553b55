"""The local platform reads the SDK's grammars, never its private helpers.

The platform may import the shared, dependency-free grammar modules (`tracengent._grammar`), the
public SDK and its own modules; any other private SDK module (`tracengent._x`) would couple the
platform to SDK internals that change without notice. The grammar modules stay leaves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tracengent

PACKAGE = Path(tracengent.__file__).parent
PLATFORM = sorted((PACKAGE / "platform").glob("*.py"))
GRAMMAR = sorted((PACKAGE / "_grammar").glob("*.py"))
SHARED = "tracengent._grammar"


def imported(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """Every module `path` (a file under `package_dir`) imports, absolute: `from .._x import y`
    is `tracengent._x` (and `tracengent._x.y`, in case y is a module), `from .. import _x` is
    `tracengent._x`."""
    package = ".".join(path.relative_to(package_dir.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def private_sdk(module: str) -> bool:
    parts = module.split(".")
    return (
        parts[0] == "tracengent"
        and any(part.startswith("_") for part in parts[1:2])
        and module != SHARED
        and not module.startswith(SHARED + ".")
    )


@pytest.mark.parametrize("path", PLATFORM, ids=[p.name for p in PLATFORM])
def test_the_platform_imports_no_private_sdk_module(path: Path) -> None:
    assert sorted(m for m in imported(path) if private_sdk(m)) == []


@pytest.mark.parametrize("path", GRAMMAR, ids=[p.name for p in GRAMMAR])
def test_the_shared_grammar_imports_nothing_of_tracengent(path: Path) -> None:
    assert sorted(m for m in imported(path) if m.split(".")[0] == "tracengent") == []


@pytest.mark.parametrize(
    ("line", "module"),
    [
        ("from .._redaction import x", "tracengent._redaction"),
        ("from .. import _permissions", "tracengent._permissions"),
        ("import tracengent._trace", "tracengent._trace"),
        ("from tracengent._auth import y", "tracengent._auth"),
    ],
)
def test_the_check_sees_every_spelling_of_a_private_import(
    tmp_path: Path, line: str, module: str
) -> None:
    fake = tmp_path / "tracengent" / "platform" / "_probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"{line}\nfrom .._grammar.paths import parse_path\nfrom ._store import Store\n")
    found = {m for m in imported(fake, tmp_path / "tracengent") if private_sdk(m)}
    # the private one is caught; the grammar and the platform's own module are not
    assert module in found and all(m.startswith(module) for m in found)
