"""One concept per module, and a module fits in a few screens: none of tracengent/ over 600 lines.

A module that outgrows this has taken on a second concept; split it along that line (as
`_dispatch` / `_exporter` / `_connection` and `platform/_engine` / `_requests` / `_callers` are).
Generated code (generated/) is not counted: nobody reads it to change it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tracengent

MAX_LINES = 600
PACKAGE = Path(tracengent.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_measure() -> None:
    names = {path.name for path in MODULES}
    assert {"_client.py", "_dispatch.py", "_engine.py", "_encode.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_module_is_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concept"
