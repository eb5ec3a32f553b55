"""``python -m bench``: run the benchmark suite, print the table, write the JSON.

    python -m bench [--quick] [--json PATH] [--markdown PATH] [--sdk current|0.1.0] [--compare]
                    [--only W1,W4,baselines]

The orchestrator never imports an SDK: it starts the loopback ingest sink (a process of its
own), then runs each workload in a fresh process of the SDK's interpreter (`_worker.py` run by
path; the workloads are in `workloads/`, one module a family) and collects what it prints.
``--sdk 0.1.0`` and ``--compare`` use a side virtualenv, ``.bench-venv-0.1.0/``, created once
with the published tracengent 0.1.0 and the same httpx, pydantic and opentelemetry-sdk versions
as this one. ``--compare`` runs every workload on both
SDKs back to back and prints current/0.1.0 ratios.

Exit status: 0 when every workload ran (whether or not it met its target), 1 when one failed to
run, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _report
from ._sink import SinkProcess
from .workloads.imports import w6_imports

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "bench" / "_worker.py"
SIDE_VENV = REPO / ".bench-venv-0.1.0"
PUBLISHED = "0.1.0"

# Sizes: the in full mode; about 1-2% of them in quick mode (CI), still on every path:
# W4's queue is scaled down with it so it still overflows, and W7's close() timeout so that a
# backlog is still cut short.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "W1": {"n": 200_000},
        "W2": {"n": 100_000},
        "W3": {"n": 300_000},
        "W4": {"n": 300_000, "close_timeout": 5.0},
        "W5": {"n": 3_000},
        "W7": {"n": 800_000, "close_timeout": 5.0},
        "W6": {"rounds": 15},
        "call": {"n": 2_000_000},
        "deque_append": {"n": 1_000_000},
        "httpx_post": {"n": 3_000},
        "otel_span": {"n": 200_000},
    },
    "quick": {
        "W1": {"n": 3_000},
        "W2": {"n": 1_500},
        "W3": {"n": 5_000},
        "W4": {"n": 5_000, "close_timeout": 2.0, "queue_capacity": 200, "settle_max_s": 10.0},
        "W5": {"n": 60},
        "W7": {"n": 12_000, "close_timeout": 0.2, "settle_max_s": 10.0},
        "W6": {"rounds": 3},
        "call": {"n": 40_000},
        "deque_append": {"n": 20_000},
        "httpx_post": {"n": 60},
        "otel_span": {"n": 4_000},
    },
}
CLIENT_WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W7")
BASELINES = ("call", "deque_append", "otel_span", "httpx_post")
NEEDS_SINK = {"W1", "W2", "W3", "W4", "W5", "W7", "httpx_post"}

NOTES = """\
How to read it: `value` is this run. The issue sets its speed targets as ratios in one run, so a
row with one is judged (`verdict`) by its ratio to a `same-run reference`: the published 0.1.0
measured in this run (`--compare`; its sync client for both rows, as 0.1.0 has no async one)
or, for W2, one OpenTelemetry span; `target ratio` says how the issue words it. `absolute` compares the value with the issue's own figure, measured on its
machine: for reference only. Per-event and per-call times are means over the whole run; CPU is
`time.process_time()` of the SDK's process (caller and background thread) until the sink had
every event; memory is the growth of the process's peak RSS during the workload (fresh process,
high-water mark reset first), bounded by 1.5× what the queue can hold (measured per event with
tracemalloc) + 16 MB; W1/W2/W3 give the queue room for every event, W4 uses the default queue
(10,000) and W7 one of 1,000,000. Details: `bench/workloads/`."""


@dataclass
class Sdk:
    name: str
    python: str
    env: dict[str, str]
    expect: dict[str, str]
    has_async: bool
    results: dict[str, Any] = field(default_factory=lambda: {"workloads": {}, "baselines": {}})


def _base_env() -> dict[str, str]:
    # Bytecode caching on: import times (W6) are those of an installed package, not a compile.
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }


def current_sdk() -> Sdk:
    env = _base_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "generated")])
    return Sdk("current", sys.executable, env, {"path": str(REPO / "tracengent")}, True)


def _pinned(distribution: str) -> str:
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


def published_sdk() -> Sdk:
    """The side virtualenv with tracengent 0.1.0, created on first use and then reused."""
    python = SIDE_VENV / "bin" / "python"
    stamp = SIDE_VENV / ".bench-requirements"
    wanted = [
        f"tracengent=={PUBLISHED}",
        *(_pinned(d) for d in ("httpx", "pydantic", "opentelemetry-sdk")),
    ]
    if not (python.exists() and stamp.exists() and stamp.read_text() == "\n".join(wanted)):
        print(f"bench: creating {SIDE_VENV.name}/ with {' '.join(wanted)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SIDE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted], check=True)
        stamp.write_text("\n".join(wanted))
    return Sdk(PUBLISHED, str(python), _base_env(), {"version": PUBLISHED}, False)


def run_worker(sdk: Sdk, name: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    command = [sdk.python, str(WORKER), name, json.dumps(params), json.dumps(sdk.expect)]
    try:
        done = subprocess.run(
            command,
            env=sdk.env,
            cwd=str(REPO / "bench"),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def _revision() -> str:
    """The commit measured, and whether the SDK's files had changes on top of it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tracengent", "generated"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return (head or "?") + (" + uncommitted SDK changes" if dirty else "")


def _load() -> str:
    """The 1/5/15-minute load averages: a busy machine explains a slow run."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1-2%% sizes (CI); every path")
    parser.add_argument("--json", metavar="PATH", help="write every measurement here")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as a Markdown page")
    parser.add_argument("--sdk", choices=("current", PUBLISHED), default="current")
    parser.add_argument("--compare", action="store_true", help="also run 0.1.0; print ratios")
    parser.add_argument("--only", metavar="LIST", help="e.g. W1,W4,baselines (default: all)")
    args = parser.parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench", *arguments])

    wanted = set(CLIENT_WORKLOADS) | {"W6"} | set(BASELINES)
    if args.only:
        chosen = {part.strip() for part in args.only.split(",") if part.strip()}
        if "baselines" in chosen:
            chosen |= set(BASELINES)
        unknown = chosen - wanted - {"baselines"}
        if unknown:
            parser.error(f"--only: unknown {sorted(unknown)}")
        wanted &= chosen

    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    timeout = 240.0 if args.quick else 900.0
    primary = current_sdk() if args.sdk == "current" else published_sdk()
    sdks = [primary]
    if args.compare:
        sdks.append(published_sdk() if primary.name == "current" else current_sdk())

    started = time.perf_counter()
    load_before = _load()
    failures = 0
    jobs: list[tuple[str, str]] = [(b, "") for b in BASELINES if b in wanted]
    jobs += [(w, v) for w in CLIENT_WORKLOADS if w in wanted for v in ("sync", "async")]
    total = len(jobs) * len(sdks) + ("W6" in wanted) * len(sdks)
    step = 0
    with SinkProcess(verify=args.quick) as sink:
        for name, variant in jobs:
            for sdk in sdks:
                step += 1
                params: dict[str, Any] = dict(sizes[name])
                if name in NEEDS_SINK:
                    params["url"] = sink.url
                if variant:
                    params["variant"] = variant
                t0 = time.perf_counter()
                if variant == "async" and not sdk.has_async:
                    result: dict[str, Any] = {
                        "skipped": f"tracengent {sdk.name} has no async client"
                    }
                else:
                    result = run_worker(sdk, name, params, timeout)
                failures += "error" in result
                label = f"{name} {variant}".strip()
                state = "ERROR " + result["error"] if "error" in result else "ok"
                if "skipped" in result:
                    state = "skipped"
                print(
                    f"bench [{step}/{total}] {sdk.name:>7} {label:<12} "
                    f"{time.perf_counter() - t0:5.1f} s  {state}",
                    file=sys.stderr,
                    flush=True,
                )
                if variant:
                    sdk.results["workloads"].setdefault(name, {})[variant] = result
                else:
                    sdk.results["baselines"][name] = result
    if "W6" in wanted:
        for sdk in sdks:
            step += 1
            t0 = time.perf_counter()
            try:
                sdk.results["workloads"]["W6"] = w6_imports(sdk.python, sdk.env, **sizes["W6"])
                state = "ok"
            except (subprocess.SubprocessError, KeyError, ValueError) as error:
                sdk.results["workloads"]["W6"] = {"error": str(error)}
                failures += 1
                state = f"ERROR {error}"
            print(
                f"bench [{step}/{total}] {sdk.name:>7} {'W6':<12} "
                f"{time.perf_counter() - t0:5.1f} s  {state}",
                file=sys.stderr,
                flush=True,
            )

    reference = sdks[1].results if args.compare else None
    rows = _report.build_rows(primary.results, reference)
    meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **_machine(),
        "quick": args.quick,
        "sdk": primary.name,
        "sdk_version": _sdk_version(primary),
        "revision": _revision(),
        "compare": sdks[1].name if args.compare else None,
        "elapsed_s": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": _load(),
    }
    print()
    print(f"{command}  —  {meta['date']}, {meta['nproc']} CPUs, Python {meta['python']}")
    print(_report.table(rows, compare=args.compare))
    print()
    print(_report.summary(rows))

    document: dict[str, Any] = {"meta": meta, **primary.results, "rows": rows}
    if args.compare:
        document["reference"] = {"sdk": sdks[1].name, **sdks[1].results}
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"bench: wrote {path}", file=sys.stderr)
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_report.markdown_document(rows, meta, compare=args.compare, notes=NOTES))
        print(f"bench: wrote {path}", file=sys.stderr)
    return 1 if failures else 0


def _sdk_version(sdk: Sdk) -> str:
    """The `tracengent.__version__` the workload processes reported."""
    results = list(sdk.results["baselines"].values())
    for variants in sdk.results["workloads"].values():
        results += [r for r in variants.values() if isinstance(r, dict)]
    return next((str(r["sdk_version"]) for r in results if "sdk_version" in r), "?")


if __name__ == "__main__":
    sys.exit(main())
