"""The retry policy: which answers are retried, how long to wait, and when to give up."""

from __future__ import annotations

import dataclasses
import math
import os
import random

import pytest
from tracengent_api.errors import error_class_for

from tracengent._options import TracengentOptions
from tracengent._retry import RetryPolicy

POLICY = RetryPolicy(max_retries=3, base_s=0.5, max_s=30.0, max_retry_after_s=30.0)
WINDOWS = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # attempts 1..8; 32 is capped to 30


class TopRng(random.Random):
    """Always draws the top of the range, to expose the upper bound of the jitter window."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (500, True),
        (501, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (200, False),
        (204, False),
        (301, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, False),
        (413, False),
        (422, False),
        (428, False),
        (430, False),
        (600, False),
    ],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    """Which answers are retried comes from the contract (x-retryable on the error answers)."""
    assert error_class_for(status).retryable is retryable


def test_from_options_maps_each_field() -> None:
    options = TracengentOptions(
        max_retries=5, backoff_base_s=0.25, backoff_max_s=7.0, max_retry_after_s=11.0
    )
    assert RetryPolicy.from_options(options) == RetryPolicy(
        max_retries=5, base_s=0.25, max_s=7.0, max_retry_after_s=11.0
    )


def test_policy_is_frozen_and_rejects_nonsense() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.max_retries = 9  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    for name in ("base_s", "max_s", "max_retry_after_s"):
        for bad in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ValueError, match=name):
                RetryPolicy(**{name: bad})  # type: ignore[arg-type]


def test_should_retry_allows_exactly_max_retries_after_the_first_try() -> None:
    assert [POLICY.should_retry(n) for n in range(0, 6)] == [False, True, True, True, False, False]
    assert RetryPolicy(max_retries=0).should_retry(1) is False

    tries = 0
    attempt = 0
    while True:  # the loop a sender runs, against a platform that always fails
        tries += 1
        attempt += 1
        if not POLICY.should_retry(attempt):
            break
    assert tries == 4


def test_window_doubles_from_base_and_is_capped() -> None:
    assert [POLICY.delay(n, None, TopRng()) for n in range(1, 9)] == WINDOWS
    assert [POLICY.delay(n, None, BottomRng()) for n in range(1, 9)] == [0.0] * 8


@pytest.mark.parametrize("attempt", range(1, 7))
def test_seeded_delays_are_full_jitter_within_the_window(attempt: int) -> None:
    window = WINDOWS[attempt - 1]
    expected = random.Random(42).uniform(0.0, window)
    assert POLICY.delay(attempt, None, random.Random(42)) == expected

    rng = random.Random(attempt)
    draws = [POLICY.delay(attempt, None, rng) for _ in range(500)]
    assert all(0.0 <= d <= window for d in draws)
    # Spread over the whole window, not bunched at a fixed point.
    assert min(draws) < 0.1 * window and max(draws) > 0.9 * window


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert POLICY.delay(10_000, None, TopRng()) == 30.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        POLICY.delay(attempt, None)


def test_two_rngs_give_different_schedules() -> None:
    first = [POLICY.delay(n, None, random.Random(1)) for n in range(1, 7)]
    second = [POLICY.delay(n, None, random.Random(2)) for n in range(1, 7)]
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_default_rng_ignores_the_global_random_state() -> None:
    random.seed(1234)
    first = POLICY.delay(6, None)
    random.seed(1234)
    second = POLICY.delay(6, None)
    assert first != second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_do_not_share_a_schedule() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next draw and leave without running pytest's teardown
        os.write(write_end, repr(POLICY.delay(6, None)).encode())
        os._exit(0)
    os.close(write_end)
    mine = POLICY.delay(6, None)
    with os.fdopen(read_end) as pipe:
        childs = float(pipe.read())
    os.waitpid(pid, 0)
    assert mine != childs


@pytest.mark.parametrize("attempt", range(1, 7))
def test_retry_after_is_a_floor(attempt: int) -> None:
    assert POLICY.delay(attempt, 20.0, BottomRng()) == 20.0
    # A jitter draw above Retry-After is kept: the server asked for at least, not exactly.
    assert POLICY.delay(attempt, 0.1, TopRng()) == max(0.1, WINDOWS[attempt - 1])


@pytest.mark.parametrize("retry_after", [31.0, 86_400.0, 1e308, math.inf])
def test_retry_after_is_capped(retry_after: float) -> None:
    assert POLICY.delay(1, retry_after, BottomRng()) == 30.0
    policy = RetryPolicy(max_s=1.0, max_retry_after_s=5.0)
    assert policy.delay(8, retry_after, TopRng()) == 5.0


@pytest.mark.parametrize("retry_after", [-1.0, -math.inf, math.nan])
def test_unusable_retry_after_is_ignored(retry_after: float) -> None:
    assert POLICY.delay(1, retry_after, BottomRng()) == 0.0
    assert POLICY.delay(3, retry_after, TopRng()) == 2.0


def test_zero_retry_after_means_no_extra_wait() -> None:
    assert POLICY.delay(1, 0.0, BottomRng()) == 0.0


def test_delay_within_without_deadline_is_delay() -> None:
    expected = POLICY.delay(4, 1.0, random.Random(7))
    assert POLICY.delay_within(4, 1.0, None, 0.0, random.Random(7)) == expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "deadline", "expected"),
    [
        (3, None, 110.0, 2.0),  # 2 s wait, 10 s left
        (3, None, 102.0, 2.0),  # lands exactly on the deadline: still allowed
        (3, None, 101.9, None),  # would start after the deadline
        (1, 20.0, 110.0, None),  # the server's Retry-After outlasts the deadline
        (1, 5.0, 110.0, 5.0),
    ],
)
def test_delay_within_gives_up_when_the_wait_passes_the_deadline(
    attempt: int, retry_after: float | None, deadline: float, expected: float | None
) -> None:
    assert POLICY.delay_within(attempt, retry_after, deadline, 100.0, TopRng()) == expected


def test_delay_within_after_the_deadline_gives_up_even_for_no_wait() -> None:
    assert POLICY.delay_within(1, None, 99.0, 100.0, BottomRng()) is None
