"""The fault front does what the fault tests rely on, and otherwise is the real platform.

Driven with plain httpx and the generated builders: if these pass, a failing fault test points
at the SDK, not at the front in its way.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import tracengent_api as api

from ._fault_front import EVENTS_PATH, Fault, FaultFront

pytestmark = pytest.mark.integration

KEY = "agk_demo"  # the demo policy's agent


@pytest.fixture
def front() -> Iterator[FaultFront]:
    with FaultFront() as front:
        yield front
    assert front.errors == []


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _event(event_id: str) -> api.Event:
    return api.Event.model_validate(
        {
            "eventId": event_id,
            "agentId": "demo-agent",
            "type": "action",
            "name": "charge-card",
            "status": "success",
            "occurredAt": "2026-01-01T00:00:00+00:00",
        }
    )


def _ingest(front: FaultFront, http: httpx.Client, *ids: str) -> httpx.Response:
    request = api.build_ingest_events([_event(i) for i in ids], base_url=front.url, ingest_key=KEY)
    return http.send(request)


def _swallow(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_starts_fast_stops_clean_and_leaks_no_thread(http: httpx.Client) -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    front = FaultFront().__enter__()
    assert time.monotonic() - started < 1.0
    try:
        assert _ingest(front, http, "evt_1").status_code == 202
        assert front.event_ids() == ["evt_1"]  # stored by the platform, read from its store
    finally:
        stopping = time.monotonic()
        front.stop()
        assert time.monotonic() - stopping < 1.0
    front.stop()  # idempotent
    assert set(threading.enumerate()) <= before


def test_scripted_faults_come_first_then_the_platform_answers(
    front: FaultFront, http: httpx.Client
) -> None:
    front.fail_next(EVENTS_PATH, 503, times=2)
    front.fail_next(EVENTS_PATH, 429, retry_after=1)
    front.script(EVENTS_PATH, Fault(400), Fault(413))
    statuses = [_ingest(front, http, "evt_1").status_code for _ in range(6)]
    assert statuses == [503, 503, 429, 400, 413, 202]
    assert [r.status for r in front.requests_to(EVENTS_PATH)] == statuses
    front.fail_next(EVENTS_PATH, 429, retry_after=1)
    with pytest.raises(api.RateLimitError) as error:
        api.parse_ingest_events(_ingest(front, http, "evt_1"))
    assert error.value.retry_after == 1.0
    assert front.event_ids() == ["evt_1"] and front.duplicates == 0

    # Delivered, but the answer was lost: the retry is a duplicate the platform absorbs.
    front.fail_next(EVENTS_PATH, 502, process=True)
    assert _ingest(front, http, "evt_2").status_code == 502
    assert _ingest(front, http, "evt_2").status_code == 202
    assert front.event_ids() == ["evt_1", "evt_2"] and front.duplicates == 1


def test_a_gzipped_request_is_recorded_as_sent_and_decompressed(
    front: FaultFront, http: httpx.Client
) -> None:
    body = b'[{"eventId":"evt_z","agentId":"demo-agent","type":"action","name":"n",' + (
        b'"status":"success","occurredAt":"2026-01-01T00:00:00+00:00"}]'
    )
    packed = gzip.compress(body)
    request = api.build_ingest_events(
        packed, base_url=front.url, ingest_key=KEY, content_encoding="gzip"
    )
    assert http.send(request).status_code == 202
    [recorded] = front.requests_to(EVENTS_PATH)
    assert recorded.body == body and recorded.raw_size == len(packed)
    assert front.event_ids() == ["evt_z"]


def test_down_and_dropped_requests_close_the_connection(
    front: FaultFront, http: httpx.Client
) -> None:
    front.down = True
    with pytest.raises(httpx.RemoteProtocolError):
        _ingest(front, http, "evt_1")
    front.down = False
    front.drop_next(EVENTS_PATH)
    with pytest.raises(httpx.RemoteProtocolError):
        _ingest(front, http, "evt_1")
    assert _ingest(front, http, "evt_1").status_code == 202
    assert [r.status for r in front.requests_to(EVENTS_PATH)] == [None, None, 202]


def test_blackhole_holds_until_the_client_gives_up_and_never_blocks_stop() -> None:
    with httpx.Client(timeout=0.3) as http:
        front = FaultFront().__enter__()
        try:
            front.blackhole = True
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                _ingest(front, http, "evt_1")
            assert time.monotonic() - started < 2.0
            assert front.wait_for_requests(EVENTS_PATH, 1, timeout=1)
            front.blackhole = False
            front.hold_next(EVENTS_PATH)
            held = threading.Thread(target=lambda: _swallow(lambda: _ingest(front, http, "e")))
            held.start()
            assert front.wait_for_requests(EVENTS_PATH, 2, timeout=1)
            assert front.events == []
        finally:
            stopping = time.monotonic()
            front.stop()
            assert time.monotonic() - stopping < 1.0
        held.join(2)
        assert not held.is_alive()


def test_holds_are_bounded_by_max_hold(front: FaultFront, http: httpx.Client) -> None:
    front.max_hold = 0.2
    front.blackhole = True
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        _ingest(front, http, "evt_1")
    assert 0.2 <= time.monotonic() - started < 2.5


def test_delay_slows_every_answer(front: FaultFront, http: httpx.Client) -> None:
    front.delay = 0.2
    started = time.monotonic()
    assert _ingest(front, http, "evt_1").status_code == 202
    assert time.monotonic() - started >= 0.2


def test_a_reviewer_decides_a_pending_approval_on_its_nth_poll(
    front: FaultFront, http: httpx.Client
) -> None:
    body = api.AuthorizeRequest.model_validate(
        {"permission": "payments:refund", "context": {"amount": 400}}
    )
    asked = api.parse_authorize(
        http.send(api.build_authorize(body, base_url=front.url, ingest_key=KEY))
    )
    assert asked.status == "pending_approval" and asked.approval_id
    front.review_approvals(True, on_poll=2)

    def poll() -> Any:
        request = api.build_get_approval(
            asked.approval_id or "", base_url=front.url, ingest_key=KEY
        )
        return api.parse_get_approval(http.send(request)).status

    assert [poll(), poll(), poll()] == ["pending", "approved", "approved"]
    approval = front.store.approval(asked.approval_id or "")
    assert approval is not None and approval.status == "approved"  # decided in the store
