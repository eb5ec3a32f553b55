"""The sync HTTP client and token provider that the dispatcher and the sync client share.

Its own module because both the queue side (`_dispatch`, which holds it through a close()) and
the exporter (`_exporter`, which sends on it) use it, and neither owns it: the client core
creates it and closes it.
"""

from __future__ import annotations

import threading

import httpx

from ._auth import AgentTokenProvider
from ._deadline import bound_by_deadlines
from ._options import TracengentOptions


class Connection:
    """The sync HTTP client and token provider shared by the dispatcher and the sync client.

    A close() in progress holds it (`hold`/`release`): closing it meanwhile, as a second,
    concurrent close() of the client does once its own timeout runs out, waits until that
    delivery is over, so the HTTP client is closed once and never under a request.
    """

    def __init__(self, options: TracengentOptions, transport: httpx.BaseTransport | None) -> None:
        self.options = options
        self.transport = transport
        self.http = self._new_http()
        self.tokens = (
            AgentTokenProvider(options, self.http) if options.uses_client_credentials else None
        )
        self._reset_closing()

    def _new_http(self) -> httpx.Client:
        return bound_by_deadlines(  # a deadline bounds the whole exchange, however it dribbles
            httpx.Client(transport=self.transport, timeout=self.options.request_timeout_s)
        )

    def _reset_closing(self) -> None:
        self._guard = threading.Lock()
        self._holds = 0
        self._close_asked = False

    def after_fork(self) -> None:
        """The parent's sockets and locks are not ours to use: start over, keeping the token."""
        self.http = self._new_http()
        self._reset_closing()
        if self.tokens is not None:
            old = self.tokens
            self.tokens = AgentTokenProvider(self.options, self.http)
            self.tokens._state = old._state  # a valid token stays valid in the child

    def hold(self) -> None:
        with self._guard:
            self._holds += 1

    def release(self) -> None:
        with self._guard:
            self._holds -= 1
            close = self._close_asked and self._holds == 0
        if close:
            self.http.close()

    def close(self) -> None:
        """Close the HTTP client now, or when the delivery that holds it is over. Idempotent."""
        with self._guard:
            self._close_asked = True
            if self._holds:
                return
        self.http.close()
