"""The workloads W1..W7 and the baselines, one module a family; each returns a dict of measurements.

- `pipeline`: W1 (`record()` on the calling thread) and W3 (delivered events/s);
- `tool_calls`: W2 (`track_tool_call` against a bare call);
- `backlog`: W4 (a 503 outage) and W7 (`close()` with a backlog): memory, accounting, close();
- `authorize`: W5 (`authorize()` against a raw httpx POST);
- `imports`: W6 (import time; run by the orchestrator, which only starts processes);
- `baselines`: a bare call, `deque.append`, a raw httpx POST, an OpenTelemetry span;
- `common`: what they share (options, warm-up, waiting for delivery, one body for both clients).

Every workload runs in a fresh process of its own (`python bench/_worker.py NAME PARAMS`),
started by the orchestrator with the interpreter of the SDK under test: the repository's for
``--sdk current``, the side virtualenv's for ``--sdk 0.1.0``. It is run by path, so the
repository's ``tracengent/`` is not on ``sys.path`` by accident and the same code measures
either SDK. A fresh process per workload also makes ``ru_maxrss`` (a process high-water mark)
mean "this workload's peak", and keeps one workload's garbage out of the next one's timings.

The workloads use only names tracengent 0.1.0 has: `TracengentClient`, `TracengentOptions`,
`AgentEvent`, `begin_trace`/`track_tool_call`, `authorize`, `record`, `dropped_count` and
`close`; the async variants use `AsyncTracengentClient` and are skipped where it is missing.
What was delivered is what the sink counted (distinct event ids), never what the SDK says.

Times: `time.perf_counter()` for durations in this process, `time.monotonic()` where they are
compared with the sink's (one clock for every process on Linux), `time.process_time()` for the
CPU of the whole process (the caller and the SDK's background thread), `time.thread_time()` for
the calling thread's own CPU.
"""
