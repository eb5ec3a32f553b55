"""The benchmark table and its JSON: one row per measurement, with its target and verdict.

The issue sets its speed targets "as ratios in one run": a machine twice as slow as the issue's
takes twice as long for the SDK and for what it is compared with. So a row with a speed target
is judged by a ratio to a reference measured in the same run: the published 0.1.0 (run by
``--compare``, which `make bench` does) or, for W2, one OpenTelemetry span (always measured), as
the issue words each target. The absolute figure is still shown against the issue's number, for
reference. Rows without a speed target (memory, log lines, close(), accounting, import time) are
judged on their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Results = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """`value <op> limit`; the limit is a number or read from another key of the same result."""

    op: str  # "<=", ">=" or "true"
    limit: float | None = None
    limit_key: str | None = None
    text: str = ""

    def limit_for(self, result: Mapping[str, Any]) -> float | None:
        if self.limit_key is not None:
            value = result.get(self.limit_key)
            return float(value) if isinstance(value, (int, float)) else None
        return self.limit

    def check(self, value: Any, result: Mapping[str, Any]) -> bool | None:
        if self.op == "true":
            return bool(value)
        limit = self.limit_for(result)
        if not isinstance(value, (int, float)) or limit is None or math.isnan(value):
            return None
        return value <= limit if self.op == "<=" else value >= limit

    def describe(self, result: Mapping[str, Any], unit: str) -> str:
        if self.text:
            return self.text.format(**result)
        limit = self.limit_for(result)
        symbol = {"<=": "≤", ">=": "≥"}.get(self.op, self.op)
        return f"{symbol} {fmt(limit, unit)}" if limit is not None else ""


@dataclass(frozen=True)
class Metric:
    group: str  # "W1" .. "W7" or "baseline"
    title: str
    key: str
    label: str
    unit: str
    variants: tuple[str, ...] = ("sync", "async")
    target: Target | None = None
    issue: float | str | None = None
    """The 0.1.0 figure the issue gives, for reference."""
    render: Callable[[Mapping[str, Any]], str] | None = None
    """For a check: how to show what was checked."""
    ratio: Ratio | None = None
    """The verdict, as a ratio to a reference measured in the same run."""


@dataclass(frozen=True)
class Ratio:
    """`value / reference <op> limit`, the reference measured in the same run.

    `of` is "0.1.0" (the same measurement of the published SDK) or "otel_span" (the OpenTelemetry
    span baseline); `why` quotes how the issue words it.
    """

    of: str
    limit: float
    why: str


def _accounting(result: Mapping[str, Any]) -> str:
    text = f"{result['delivered']:,} + {result['dropped']:,} of {result['recorded']:,}"
    extra = []
    if result.get("duplicates"):
        extra.append(f"{result['duplicates']:,} twice")
    if result.get("events_after_close"):
        extra.append(f"{result['events_after_close']:,} after close")
    if "dropped_final" in result and result["dropped_final"] != result["dropped"]:
        extra.append(f"dropped grew to {result['dropped_final']:,} after close")
    if result.get("sdk_threads_alive_after_close"):
        extra.append("SDK thread still running after close")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def _pipeline_exact(result: Mapping[str, Any]) -> bool:
    return bool(
        result["delivered"] + result["dropped"] == result["recorded"] and not result["duplicates"]
    )


_EXACT = Target("true", text="delivered + dropped = recorded")
_EXACT_AFTER = Target("true", text="= recorded; none twice or after close")

METRICS: tuple[Metric, ...] = (
    Metric("W1", "record()", "caller_us_per_event", "wall per event, calling thread", "µs",
           target=Target("<=", 2.0), issue=11.1,
           ratio=Ratio("0.1.0", 0.2, "≥ 5× better than 0.1.0")),
    Metric("W1", "record()", "caller_cpu_us_per_event", "CPU per event, calling thread", "µs"),
    Metric("W1", "record()", "cpu_us_per_delivered", "process CPU per delivered event", "µs",
           target=Target("<=", 5.0), issue=16.8,
           ratio=Ratio("0.1.0", 5.0 / 16.8, "5 µs where 0.1.0 took 16.8")),
    Metric("W1", "record()", "pipeline_exact", "delivered + dropped of recorded", "check",
           target=_EXACT, render=_accounting),
    Metric("W2", "track_tool_call", "caller_overhead_us", "overhead per call, calling thread",
           "µs", target=Target("<=", 3.0), issue=11.9,
           ratio=Ratio("otel_span", 0.25, "below a quarter of an OpenTelemetry span")),
    Metric("W2", "track_tool_call", "caller_cpu_overhead_us", "overhead per call, caller CPU",
           "µs"),
    Metric("W2", "track_tool_call", "cpu_overhead_us", "overhead per call, process CPU", "µs"),
    Metric("W3", "throughput", "throughput_eps", "delivered events/s, first record → last ack",
           "ev/s", target=Target(">=", 150_000.0), issue=62_000.0,
           ratio=Ratio("0.1.0", 150 / 62, "150k events/s where 0.1.0 did 62k")),
    Metric("W4", "503 outage", "peak_rss_mb", "peak memory growth", "MB",
           target=Target("<=", limit_key="memory_bound_mb",
                         text="≤ {memory_bound_mb:.1f} MB (queue of {queue_capacity:,})"),
           issue=6.0),
    Metric("W4", "503 outage", "log_lines", "log lines written", "lines", issue=2_901.0),
    Metric("W4", "503 outage", "log_lines_per_s", "log lines per second of outage", "/s",
           target=Target("<=", 3.0)),
    Metric("W4", "503 outage", "close_s", "close() duration", "s",
           target=Target("<=", limit_key="close_limit_s",
                         text="≤ {close_timeout_s:g} s timeout")),
    Metric("W4", "503 outage", "accounting_exact", "drops counted exactly", "check",
           target=_EXACT_AFTER, render=_accounting),
    Metric("W5", "authorize()", "sdk_p50_us", "latency p50", "µs"),
    Metric("W5", "authorize()", "sdk_p99_us", "latency p99", "µs"),
    Metric("W5", "authorize()", "raw_p50_us", "raw httpx POST p50, same server", "µs"),
    Metric("W5", "authorize()", "overhead_p50_us", "overhead p50 over the raw POST", "µs",
           target=Target("<=", 15.0), issue=12.0,
           ratio=Ratio("0.1.0", 15 / 12, "15 µs where 0.1.0 took 12")),
    Metric("W5", "authorize()", "overhead_p99_us", "overhead p99 over the raw POST", "µs"),
    Metric("W6", "import", "tracengent_ms", "import tracengent", "ms", variants=("",)),
    Metric("W6", "import", "tracengent_api_ms", "import tracengent_api", "ms", variants=("",)),
    Metric("W6", "import", "httpx_ms", "import httpx", "ms", variants=("",)),
    Metric("W6", "import", "pydantic_ms", "import pydantic", "ms", variants=("",)),
    Metric("W6", "import", "httpx_pydantic_ms", "import httpx, pydantic", "ms", variants=("",)),
    Metric("W6", "import", "overhead_ms", "tracengent − (httpx + pydantic)", "ms",
           variants=("",), target=Target("<=", 30.0)),
    Metric("W6", "import", "client_ms", "import + first use of TracengentClient", "ms",
           variants=("",)),
    Metric("W6", "import", "client_overhead_ms", "that − (httpx + pydantic)", "ms",
           variants=("",)),
    Metric("W7", "close() with backlog", "close_s", "close() duration", "s",
           target=Target("<=", limit_key="close_limit_s",
                         text="≤ {close_timeout_s:g} s timeout"),
           issue="stops at 5 s"),
    Metric("W7", "close() with backlog", "peak_rss_mb", "peak memory growth", "MB",
           target=Target("<=", limit_key="memory_bound_mb",
                         text="≤ {memory_bound_mb:.0f} MB (queue of {queue_capacity:,})"),
           issue=400.0),
    Metric("W7", "close() with backlog", "max_events_per_request", "largest request", "events",
           issue="~300k"),
    Metric("W7", "close() with backlog", "accounting_exact", "delivered + dropped", "check",
           target=_EXACT_AFTER, issue="lost / twice", render=_accounting),
    Metric("baseline", "bare call", "ns_per_call", "f() in a loop", "ns", variants=("call",)),
    Metric("baseline", "deque.append", "ns_per_call", "append a small dict", "ns",
           variants=("deque_append",)),
    Metric("baseline", "httpx POST", "p50_us", "raw POST p50", "µs", variants=("httpx_post",)),
    Metric("baseline", "httpx POST", "p99_us", "raw POST p99", "µs", variants=("httpx_post",)),
    Metric("baseline", "OTel span", "caller_us_per_span", "start + end, calling thread", "µs",
           variants=("otel_span",), issue=11.8),
    Metric("baseline", "OTel span", "cpu_us_per_span", "start + end, process CPU", "µs",
           variants=("otel_span",)),
)  # fmt: skip


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if unit in ("ev/s", "lines", "events"):
        return f"{value:,.0f}"
    if unit in ("ns",):
        return f"{value:,.0f} ns"
    if unit in ("µs", "ms"):
        return f"{value:,.2f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "/s":
        return f"{value:.2f}/s"
    return f"{value:g}"


def _result_for(results: Results, metric: Metric, variant: str) -> Mapping[str, Any] | None:
    raw = _raw(results, metric, variant)
    if not isinstance(raw, Mapping) or "error" in raw or "skipped" in raw:
        return None
    found: Mapping[str, Any] = raw
    if metric.group in ("W1", "W3"):
        found = {**found, "pipeline_exact": _pipeline_exact(found)}
    return found


def _raw(results: Results, metric: Metric, variant: str) -> Any:
    if metric.group == "baseline":
        return results.get("baselines", {}).get(variant)
    if metric.group == "W6":
        return results.get("workloads", {}).get("W6")
    return results.get("workloads", {}).get(metric.group, {}).get(variant)


def _status(found: Mapping[str, Any] | None, metric: Metric, value: Any) -> str:
    if metric.target is None or found is None or value is None:
        return ""
    verdict = metric.target.check(value, found)
    return "" if verdict is None else "PASS" if verdict else "FAIL"


def build_rows(results: Results, reference: Results | None = None) -> list[dict[str, Any]]:
    """One row per metric and variant; with `reference` (0.1.0 measured), ratios too."""
    rows: list[dict[str, Any]] = []
    for metric in METRICS:
        for variant in metric.variants:
            found = _result_for(results, metric, variant)
            problem = _raw(results, metric, variant)
            value = None if found is None else found.get(metric.key)
            row: dict[str, Any] = {
                "workload": metric.group,
                "title": metric.title,
                "variant": variant if metric.group not in ("W6", "baseline") else "",
                "measurement": metric.label,
                "key": metric.key,
                "unit": metric.unit,
                "value": value,
                "shown": fmt(value, metric.unit)
                if metric.render is None or found is None
                else metric.render(found),
                "target": metric.target.describe(found or {}, metric.unit)
                if metric.target and (found or metric.target.limit_key is None)
                else "",
                "issue_010": metric.issue,
                "target_op": metric.target.op if metric.target else None,
                "status": _status(found, metric, value),
            }
            if isinstance(problem, Mapping) and ("error" in problem or "skipped" in problem):
                row["shown"] = "skipped" if "skipped" in problem else "ERROR"
                row["note"] = problem.get("skipped") or problem.get("error")
            if reference is not None:
                # 0.1.0 has no async client: the issue's 0.1.0 figures are its sync client's
                ref_found = _result_for(reference, metric, variant) or (
                    _result_for(reference, metric, "sync") if variant == "async" else None
                )
                ref_value = None if ref_found is None else ref_found.get(metric.key)
                row["value_010"] = ref_value
                row["shown_010"] = (
                    fmt(ref_value, metric.unit)
                    if metric.render is None or ref_found is None
                    else metric.render(ref_found)
                )
            _judge(row, metric, value, results, reference)
            rows.append(row)
    return rows


_SPAN = Metric("baseline", "OTel span", "caller_us_per_span", "", "µs", variants=("otel_span",))


def _judge(
    row: dict[str, Any],
    metric: Metric,
    value: Any,
    results: Results,
    reference: Results | None,
) -> None:
    """The row's verdict: by its same-run ratio when it has one, else by its own target."""
    row["verdict"] = row["status"]
    ratio_spec = metric.ratio
    if ratio_spec is None:
        return
    if ratio_spec.of == "otel_span":
        span = _result_for(results, _SPAN, "otel_span")
        ref = None if span is None else span.get(_SPAN.key)
        row["reference_name"] = "OTel span"
    else:
        ref = row.get("value_010") if reference is not None else None
        row["reference_name"] = "0.1.0 sync" if row["variant"] == "async" else "0.1.0"
    row["reference"] = ref
    row["target_ratio"] = ratio_spec.limit
    row["ratio_why"] = ratio_spec.why
    usable = isinstance(value, (int, float)) and isinstance(ref, (int, float)) and ref > 0
    if not usable or metric.target is None:
        row["verdict"] = ""  # no reference in this run: not judged (the absolute is shown)
        return
    ratio = value / ref
    row["ratio"] = ratio
    ok = ratio <= ratio_spec.limit if metric.target.op == "<=" else ratio >= ratio_spec.limit
    row["verdict"] = "PASS" if ok else "FAIL"


def _issue_text(value: float | str | None, unit: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return fmt(value, unit)


def table(rows: list[dict[str, Any]], *, compare: bool) -> str:
    """The rows as a Markdown table (readable in a terminal too)."""
    header = ["workload", "client", "measurement", "value", "target", "0.1.0 (issue)", "absolute"]
    if compare:
        header += ["0.1.0 (measured)"]
    header += ["same-run reference", "ratio", "target ratio", "verdict"]
    lines = [header]
    for row in rows:
        cells = [
            f"{row['workload']} {row['title']}",
            row["variant"],
            row["measurement"],
            row["shown"],
            row["target"],
            _issue_text(row["issue_010"], row["unit"]),
            row["status"],
        ]
        if compare:
            cells.append(row.get("shown_010", ""))
        ratio, wanted, ref = row.get("ratio"), row.get("target_ratio"), row.get("reference")
        symbol = "≤" if row["target_op"] == "<=" else "≥"
        cells += [
            "" if ref is None else f"{row['reference_name']} {fmt(ref, row['unit'])}",
            "" if ratio is None else f"{ratio:.2f}×",
            "" if wanted is None else f"{symbol} {wanted:.2f}× ({row['ratio_why']})",
            row["verdict"],
        ]
        lines.append(cells)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]

    def render(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [render(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [render(line) for line in lines[1:]]
    return "\n".join(out)


def summary(rows: list[dict[str, Any]]) -> str:
    judged = [r for r in rows if r["verdict"]]
    failed = [r for r in judged if r["verdict"] == "FAIL"]
    text = f"verdicts: {len(judged) - len(failed)}/{len(judged)} PASS"
    if failed:
        text += " — FAIL: " + ", ".join(
            f"{r['workload']} {r['variant']} {r['measurement']}".replace("  ", " ") for r in failed
        )
    unjudged = [r for r in rows if r.get("target_ratio") is not None and not r["verdict"]]
    if unjudged:
        text += f"\nnot judged (no same-run reference; run with --compare): {len(unjudged)} rows"
    absolute = [r for r in rows if r["status"]]
    passed = sum(r["status"] == "PASS" for r in absolute)
    text += (
        f"\nabsolute, against the issue's figures for its machine: {passed}/{len(absolute)} PASS"
    )
    return text


def markdown_document(
    rows: list[dict[str, Any]], meta: Mapping[str, Any], *, compare: bool, notes: str = ""
) -> str:
    """A self-contained Markdown page: how it was made, on what, and the table."""
    parts = [
        "# Tracengent SDK benchmarks",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}, "
        f"Python {meta['python']}",
        f"- SDK: tracengent {meta['sdk_version']} at {meta['revision']}"
        + (" vs the published 0.1.0" if compare else ""),
        f"- mode: {'quick' if meta['quick'] else 'full'}; wall time {meta['elapsed_s']:.0f} s; "
        f"load average {meta['load_before']} before, {meta['load_after']} after",
        "",
        table(rows, compare=compare),
        "",
        summary(rows),
        "",
    ]
    if notes:
        parts += [notes, ""]
    return "\n".join(parts)
