"""Soak: record and authorize against `tracengent dev` while it is SIGKILLed and restarted.

Four threads on a sync client and twenty asyncio tasks on an async client record events (each
with an explicit event id, kept here) and ask for decisions, for `TRACENGENT_SOAK_SECONDS`
(default 8; `make soak` runs 120), while the platform process is killed with SIGKILL and started
again on the same port and data dir, twice. The retry budget is sized to outlast each outage.

Afterwards the platform's store holds every recorded event exactly once, the clients counted
every event as delivered and none as dropped, the platform's 202 answers account for every
event (new or duplicate: a batch stored just before a kill comes back as duplicates), no call
raised, and every decision that began and ended while the process was dead is a deny.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tracengent import (
    AgentEvent,
    AsyncTracengentClient,
    AuthDecision,
    TracengentClient,
    TracengentOptions,
)
from tracengent.platform import Store

pytestmark = [
    pytest.mark.soak,
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

SOAK_SECONDS = float(os.environ.get("TRACENGENT_SOAK_SECONDS", "8"))
THREADS = 4
TASKS = 20
KILLS_AT = (0.25, 0.6)
"""When the platform is killed, as fractions of the soak."""
DEAD_S = 0.5
"""How long the platform stays dead before it is started again (startup adds its own time)."""
MAX_OUTAGE_S = 6.0
"""The retry budget below outlasts this by a wide margin; a longer outage voids the premise."""
RETRY_BUDGET: dict[str, object] = {"max_retries": 60, "backoff_base_s": 0.05, "backoff_max_s": 0.4}
"""60 retries in jittered windows of up to 0.4 s: about 11 s of waiting on average, and over
6 s with overwhelming probability, so a batch outlives any outage up to MAX_OUTAGE_S."""
READY_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServedPlatform:
    """`python -m tracengent.cli dev` on one port and one data dir, killed and restarted at will."""

    def __init__(self, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = data
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACENGENT_")}
        self._log = self._log or self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "tracengent.cli", "dev"),
                *("--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.data)),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:  # bounded by the deadline
            try:
                if httpx.get(self.url + "/.well-known/jwks.json", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"tracengent dev did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, sockets closed by the kernel."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedPlatform]:
    platform = ServedPlatform(tmp_path / "data", tmp_path / "platform.log")
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


class CountingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Real HTTP, sync and async, adding up what the platform's 202 ingest answers say."""

    def __init__(self) -> None:
        self._sync = httpx.HTTPTransport()
        self._async = httpx.AsyncHTTPTransport()
        self._lock = threading.Lock()
        self.accepted = 0
        self.duplicates = 0

    def _count(self, request: httpx.Request, response: httpx.Response) -> None:
        if request.url.path != "/v1/ingest/events" or response.status_code != 202:
            return
        answer = response.json()
        with self._lock:
            self.accepted += int(answer["accepted"])
            self.duplicates += int(answer["duplicates"])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._sync.handle_request(request)
        response.read()
        self._count(request, response)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._async.handle_async_request(request)
        await response.aread()
        self._count(request, response)
        return response

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        await self._async.aclose()


@dataclass(frozen=True)
class Asked:
    started: float
    ended: float
    result: Any


@dataclass(frozen=True)
class Outage:
    dead_from: float
    """The process was dead (waited for) from here..."""
    dead_until: float
    """...until here, when the restart began."""
    up_at: float
    """Answering again."""


class Soak:
    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.recorded_sync: list[str] = []
        self.recorded_async: list[str] = []
        self.asked: list[Asked] = []
        self.escaped: list[BaseException] = []
        self.transports = (CountingTransport(), CountingTransport())

    def options(self) -> TracengentOptions:
        return TracengentOptions(
            agent_id="demo-agent",
            base_url=self.url,
            client_id="key_demo",
            client_secret="ags_demo",
            flush_interval_ms=50,
            queue_capacity=1_000_000,  # a full queue would be a loss this test did not cause
            authorize_timeout_s=2.0,
            request_timeout_s=5.0,
            **RETRY_BUDGET,  # type: ignore[arg-type]
        )

    def thread_worker(self, client: TracengentClient, n: int) -> None:
        for i in range(10**9):  # bounded by the stop event, set after SOAK_SECONDS
            if self.stop.is_set():
                return
            try:
                event_id = f"evt_soak_t{n}_{i}"
                client.record(AgentEvent(name="soak", event_id=event_id, attributes={"i": i}))
                self.recorded_sync.append(event_id)
                if i % 10 == 0:
                    started = time.monotonic()
                    decision = client.authorize("flights:book")
                    self.asked.append(Asked(started, time.monotonic(), decision))
            except BaseException as error:  # noqa: BLE001 - nothing may escape: recorded, asserted
                self.escaped.append(error)
            time.sleep(0.005)

    async def task_worker(self, client: AsyncTracengentClient, n: int) -> None:
        for i in range(10**9):  # bounded by the stop event, set after SOAK_SECONDS
            if self.stop.is_set():
                return
            try:
                event_id = f"evt_soak_a{n}_{i}"
                client.record(AgentEvent(name="soak", event_id=event_id, attributes={"i": i}))
                self.recorded_async.append(event_id)
                if i % 5 == 0:
                    started = time.monotonic()
                    decision = await client.authorize("flights:book")
                    self.asked.append(Asked(started, time.monotonic(), decision))
            except Exception as error:  # noqa: BLE001 - nothing may escape: recorded, asserted
                self.escaped.append(error)
            await asyncio.sleep(0.02)

    def run_async(self, results: dict[str, Any]) -> None:
        async def main() -> None:
            client = AsyncTracengentClient(self.options(), transport=self.transports[1])
            try:
                await asyncio.gather(*(self.task_worker(client, n) for n in range(TASKS)))
                results["flushed"] = await client.flush(SETTLE_TIMEOUT_S)
            finally:
                await client.close(5)
            results["stats"] = client._core.dispatcher.stats

        try:
            asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.escaped.append(error)


def test_nothing_is_lost_or_duplicated_across_platform_kills(served: ServedPlatform) -> None:
    soak = Soak(served.url)
    client = TracengentClient(soak.options(), transport=soak.transports[0])
    async_results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=soak.thread_worker, args=(client, n), name=f"soak-{n}")
        for n in range(THREADS)
    ]
    threads.append(threading.Thread(target=soak.run_async, args=(async_results,), name="loop"))
    outages: list[Outage] = []
    began = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for fraction in KILLS_AT:
            time.sleep(max(0.0, began + SOAK_SECONDS * fraction - time.monotonic()))
            served.kill()
            dead_from = time.monotonic()
            time.sleep(DEAD_S)
            dead_until = time.monotonic()
            served.start()
            outages.append(Outage(dead_from, dead_until, time.monotonic()))
        time.sleep(max(0.0, began + SOAK_SECONDS - time.monotonic()))
    finally:
        soak.stop.set()
        for thread in threads:
            thread.join(SETTLE_TIMEOUT_S + 30)
    assert not any(t.is_alive() for t in threads), "a worker did not stop"
    flushed = client.flush(SETTLE_TIMEOUT_S)
    client.close(5)
    store = Store.in_data_dir(served.data)
    try:
        stored = [str(e["eventId"]) for e in store.events()]
    finally:
        store.close()

    recorded = soak.recorded_sync + soak.recorded_async
    counted = soak.transports[0].accepted + soak.transports[1].accepted
    resent = soak.transports[0].duplicates + soak.transports[1].duplicates
    print(
        f"\nsoak {SOAK_SECONDS:g}s: {len(recorded)} events, {len(soak.asked)} decisions,"
        f" outages {[round(o.up_at - o.dead_from, 2) for o in outages]} s,"
        f" 202 answers: {counted} accepted + {resent} duplicates"
    )

    # The premise: two real outages, each within what the retry budget outlasts.
    assert served.starts == 1 + len(KILLS_AT) and len(outages) == len(KILLS_AT)
    for outage in outages:
        assert outage.up_at - outage.dead_from <= MAX_OUTAGE_S, outage

    # Nothing raised into the agent, from any thread or task.
    assert soak.escaped == []

    # Every recorded event is stored exactly once: nothing lost, nothing duplicated.
    assert len(recorded) == len(set(recorded)) > 0
    assert len(stored) == len(set(stored))
    assert set(stored) == set(recorded)
    assert flushed is True and async_results.get("flushed") is True
    sync_stats, async_stats = client._core.dispatcher.stats, async_results["stats"]
    assert (sync_stats.delivered, sync_stats.dropped_total) == (len(soak.recorded_sync), 0)
    assert (async_stats.delivered, async_stats.dropped_total) == (len(soak.recorded_async), 0)
    # The 202s: new events are counted once; a retried batch's events come back as duplicates.
    assert counted <= len(recorded) <= counted + resent

    # Every decision is a decision; none made while the process was dead is an allow.
    assert all(isinstance(a.result, AuthDecision) for a in soak.asked)
    for outage in outages:
        during = [
            a for a in soak.asked if a.started >= outage.dead_from and a.ended <= outage.dead_until
        ]
        assert during, "no decision was asked while the platform was dead"
        assert all(not a.result.allowed and a.result.status == "denied" for a in during)
    after = [a for a in soak.asked if a.started >= outages[-1].up_at]
    assert any(a.result.allowed for a in after), "authorize did not recover after the restart"
