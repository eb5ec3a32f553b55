"""When to retry a failed platform call, and how long to wait first.

Pure policy shared by the sync and the async client: callers own the clock, the sleeping and
the transport, so the same schedule drives ``time.sleep`` and ``asyncio.sleep`` and tests can
drive it with a seeded ``random.Random`` and a fake clock. Which answers are retryable is the
contract's to say (``tracengent_api.errors``: 429 and 5xx); transport errors are retryable too.

Waits use "full jitter" (a uniform draw from an exponentially growing window): many agents that
failed together must not retry together, or a recovering platform is knocked down again.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._options import TracengentOptions

# Private, so tests or users re-seeding the global `random` cannot synchronise the clients.
_RNG = random.Random()
if hasattr(os, "register_at_fork"):
    # A forked worker (gunicorn, multiprocessing) would otherwise inherit the parent's state and
    # draw the very same "random" delays as its siblings.
    os.register_at_fork(after_in_child=_RNG.seed)

# 2**62 times any sane base is far past any cap; a bound keeps float maths from overflowing.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget and backoff schedule for one logical call (e.g. sending one batch).

    ``attempt`` is always the 1-based number of the *retry* about to be made: the first try is
    not counted, so ``max_retries=3`` means at most 4 tries in total.
    """

    max_retries: int = 3
    base_s: float = 0.5
    max_s: float = 30.0
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("base_s", "max_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @classmethod
    def from_options(cls, options: TracengentOptions) -> RetryPolicy:
        return cls(
            max_retries=options.max_retries,
            base_s=options.backoff_base_s,
            max_s=options.backoff_max_s,
            max_retry_after_s=options.max_retry_after_s,
        )

    def should_retry(self, attempt: int) -> bool:
        """Whether retry number ``attempt`` (1-based) is still within the budget."""
        return 1 <= attempt <= self.max_retries

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        A usable ``retry_after`` (the server's parsed ``Retry-After``, in seconds) is a floor:
        waiting less would only earn another 429. It is capped at ``max_retry_after_s`` so a
        misbehaving server cannot park the sender; negative or NaN values are ignored.
        """
        if attempt < 1:
            raise ValueError(f"attempt is the 1-based retry number, got {attempt}")
        window = min(self.max_s, self.base_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
        wait = (rng if rng is not None else _RNG).uniform(0.0, window)
        if retry_after is not None and retry_after >= 0:  # NaN compares False: ignored
            wait = max(wait, min(retry_after, self.max_retry_after_s))
        return wait

    def delay_within(
        self,
        attempt: int,
        retry_after: float | None,
        deadline: float | None,
        now: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """Like :meth:`delay`, but None when the retry would start after ``deadline``.

        For callers bounded by a deadline (``flush(timeout)``, shutdown, an authorize timeout):
        sleeping into the deadline only to give up then wastes the time left, so they give up
        now and count the drop. ``deadline`` and ``now`` are read from the same clock.
        """
        wait = self.delay(attempt, retry_after, rng)
        if deadline is not None and now + wait > deadline:
            return None
        return wait
