"""W5: `authorize()` latency against a raw httpx POST of the same body to the same server."""

from __future__ import annotations

import statistics
import time
from collections.abc import Generator
from typing import Any

from .common import (
    CONTEXT,
    DECISION_BODY,
    JSON_HEADERS,
    PERMISSION,
    Result,
    Steps,
    options,
    percentile,
    raw_post,
    run_variant,
)

WARMUP_CALLS = 50


def _latency_summary(sdk: list[float], raw: list[float]) -> Result:
    us = 1e6
    return {
        "calls": len(sdk),
        "sdk_p50_us": statistics.median(sdk) * us,
        "sdk_p99_us": percentile(sdk, 99) * us,
        "raw_p50_us": statistics.median(raw) * us,
        "raw_p99_us": percentile(raw, 99) * us,
        "overhead_p50_us": (statistics.median(sdk) - statistics.median(raw)) * us,
        "overhead_p99_us": (percentile(sdk, 99) - percentile(raw, 99)) * us,
    }


def w5_authorize(url: str, n: int, variant: str) -> Result:
    """W5: `authorize()` latency against a raw httpx POST of the same body to the same server.

    The raw POST (`raw_post`, to ``/echo``, which answers the same decision bytes as
    ``/v1/authorize``) sends the same JSON with the bearer token and reads the JSON answer. The
    two alternate which goes first, so drift on a noisy machine hits both alike; the first 50 of
    each are a warm-up. Both are timed around the same `yield` (see `Steps`), so what the driver
    adds to a call (well under a microsecond) is the same on both sides.
    """
    import httpx

    asynchronous = variant == "async"

    def steps(client_class: Any) -> Steps:
        client = client_class(options(url))
        raw: Any = (httpx.AsyncClient if asynchronous else httpx.Client)(base_url=url, timeout=10.0)
        answer = yield raw.post("/v1/oauth/token", data={"grant_type": "client_credentials"})
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {answer.json()['access_token']}"}
        sdk_lat: list[float] = []
        raw_lat: list[float] = []
        denied = 0

        def ask() -> Generator[Any, Any, None]:
            nonlocal denied
            t0 = time.perf_counter()
            decision = yield client.authorize(PERMISSION, CONTEXT)
            sdk_lat.append(time.perf_counter() - t0)
            denied += not decision.allowed

        def post() -> Generator[Any, Any, None]:
            t0 = time.perf_counter()
            (yield raw.send(raw_post(url, DECISION_BODY, headers))).json()
            raw_lat.append(time.perf_counter() - t0)

        for i in range(n + WARMUP_CALLS):
            for call in (ask, post) if i % 2 == 0 else (post, ask):
                yield from call()
        yield raw.aclose() if asynchronous else raw.close()
        yield client.close(5.0)
        summary = _latency_summary(sdk_lat[WARMUP_CALLS:], raw_lat[WARMUP_CALLS:])
        return {**summary, "denied": denied}

    return run_variant(variant, steps)
