"""W6: import time, in fresh interpreters (run by the orchestrator: it only starts processes)."""

from __future__ import annotations

import statistics
import subprocess
import tempfile

from .common import Result

IMPORT_SNIPPET = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def w6_imports(python: str, env: dict[str, str], rounds: int) -> Result:
    """W6: `import X` in fresh interpreters, median of `rounds` (after one discarded round).

    Rounds interleave the modules, so a noisy moment costs every module alike. The target
    compares `tracengent` with `httpx, pydantic` imported together in one process.
    """
    # The last one is what an application pays to start using the client: names load lazily.
    client = "tracengent; tracengent.TracengentClient"
    modules = ["httpx", "pydantic", "httpx, pydantic", "tracengent", "tracengent_api", client]
    with tempfile.TemporaryDirectory() as cwd:

        def available(module: str) -> bool:
            probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
            probed = subprocess.run([python, "-c", probe], env=env, cwd=cwd, timeout=120)
            return probed.returncode == 0

        modules = [m for m in modules if "," in m or ";" in m or available(m)]
        samples: dict[str, list[float]] = {m: [] for m in modules}
        for round_ in range(rounds + 1):
            for module in modules:
                out = subprocess.run(
                    [python, "-c", IMPORT_SNIPPET.format(module)],
                    env=env,
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                )
                if round_:
                    samples[module].append(float(out.stdout.strip()) * 1e3)
    medians = {m: statistics.median(s) for m, s in samples.items()}
    result: Result = {"rounds": rounds, "ms": medians}
    result["tracengent_ms"] = medians["tracengent"]
    result["tracengent_api_ms"] = medians.get("tracengent_api")
    result["httpx_ms"] = medians["httpx"]
    result["pydantic_ms"] = medians["pydantic"]
    result["httpx_pydantic_ms"] = medians["httpx, pydantic"]
    result["overhead_ms"] = medians["tracengent"] - medians["httpx, pydantic"]
    result["client_ms"] = medians[client]
    result["client_overhead_ms"] = medians[client] - medians["httpx, pydantic"]
    return result
