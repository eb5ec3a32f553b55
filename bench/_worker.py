"""Run one workload in this process: ``python bench/_worker.py NAME PARAMS [EXPECT]``.

The orchestrator starts it by path with the interpreter of the SDK under test (see
`bench.workloads`), so the repository's ``tracengent/`` is never on ``sys.path`` by accident. It
prints ``RESULT {...}``, what the workload measured plus the SDK's version, as its last line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _import_bench() -> None:
    """Make `bench` importable as a package from this folder, without putting its parent (the
    repository, with its ``tracengent/``) on ``sys.path``: the workloads import each other
    relatively, as the orchestrator imports them."""
    if "bench" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "bench", BENCH / "__init__.py", submodule_search_locations=[str(BENCH)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = package
    spec.loader.exec_module(package)


def workloads() -> dict[str, Callable[..., dict[str, Any]]]:
    """What the orchestrator may name (W6 is not here: the orchestrator runs it itself)."""
    _import_bench()
    from bench.workloads import authorize, backlog, baselines, pipeline, tool_calls

    return {
        "W1": pipeline.w1_record,
        "W2": tool_calls.w2_tool_call,
        "W3": pipeline.w3_throughput,
        "W4": backlog.w4_outage,
        "W5": authorize.w5_authorize,
        "W7": backlog.w7_shutdown,
        "call": baselines.baseline_call,
        "deque_append": baselines.baseline_deque_append,
        "httpx_post": baselines.baseline_httpx_post,
        "otel_span": baselines.baseline_otel_span,
    }


def main(argv: list[str]) -> int:
    """Run one workload: ``_worker.py NAME '{"param": ...}' [EXPECT]``; prints ``RESULT {...}``.

    EXPECT is a JSON object: ``{"version": "0.1.0"}`` or ``{"path": DIR}`` (where `tracengent`
    must be imported from), so a mix-up of interpreters fails instead of measuring the wrong SDK.
    """
    name, params = argv[1], json.loads(argv[2])
    expect = json.loads(argv[3]) if len(argv) > 3 else {}
    import tracengent

    version = getattr(tracengent, "__version__", "?")
    where = os.path.dirname(os.path.abspath(tracengent.__file__ or ""))
    if "version" in expect and version != expect["version"]:
        raise SystemExit(f"expected tracengent {expect['version']}, imported {version} ({where})")
    if "path" in expect and where != os.path.abspath(expect["path"]):
        raise SystemExit(f"expected tracengent from {expect['path']}, imported it from {where}")
    result = workloads()[name](**params)
    result["sdk_version"] = version
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
