"""The SDK's logger, and a limiter so an outage costs a few log lines, not one per event."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ._scrub import install_log_filter

logger = logging.getLogger("tracengent")
# No record of these loggers reaches a handler with a secret in it: the SDK's own, and those of
# the HTTP stack it drives, whose DEBUG traces quote request and response headers (a platform or
# proxy that echoes Authorization back would otherwise put the token in the application's logs).
# A filter applies only to its own logger's records, so each one is named.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
for _name in ("tracengent", *_HTTP_LOGGERS):
    install_log_filter(logging.getLogger(_name))


class RateLimitedLog:
    """Logs a message kind at most once per `interval_s`, saying how many were held back."""

    def __init__(
        self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            message += " (%d similar message(s) held back)"
            args = (*args, held)
        logger.warning("Tracengent: " + message, *args)
