"""What the sync and the async client share: options, connection, dispatcher, event defaults.

The two clients are thin shells around one `ClientCore`; everything here is either pure or
non-blocking, so it is safe to call from a thread or from the event loop.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import httpx

from ._auth import AgentTokenProvider
from ._connection import Connection
from ._dispatch import EventDispatcher
from ._errors import TracengentConfigError
from ._events import AgentEvent
from ._flow import Flow, run_sync
from ._logs import RateLimitedLog
from ._observe import Observer, notify
from ._options import LOCAL, TracengentOptions
from ._permissions import any_permission_matches
from ._scrub import Scrubber

T = TypeVar("T")
#: how long flush() and close() wait by default (seconds)
CLOSE_TIMEOUT_S = 5.0


class ClientCore:
    def __init__(self, options: TracengentOptions, transport: httpx.BaseTransport | None) -> None:
        options.validate()
        if options.base_url.strip() == LOCAL:
            options, transport = embedded(options, transport)
        self.options = options
        self.connection = Connection(options, transport)
        self.dispatcher = EventDispatcher(options, self.connection)
        #: every text this client lets out (reasons, exception messages, event errors) passes it
        self.scrubber = Scrubber(self._secrets)
        #: approvals that released their call through this client (one call each)
        self.released_approvals: set[str] = set()
        self._log = RateLimitedLog()
        #: an instrumentation's hook (tracengent.integrations.opentelemetry); None costs nothing
        self.observer: Observer | None = None

    def _secrets(self) -> tuple[str | None, ...]:
        tokens = self.connection.tokens
        token = tokens.cached() if tokens is not None else None
        return (self.options.client_secret, self.options.ingest_key, token)

    def remember_secret(self, secret: str) -> None:
        """A secret this client holds from now on (a delegated token): scrubbed everywhere."""
        self.scrubber.add(secret)

    def scrub(self, text: object) -> str:
        """`text` without this client's secrets or anything shaped like a credential."""
        return self.scrubber.text(text)

    def record(self, event: AgentEvent) -> None:
        """Enqueue; never blocks, never raises. What is not an event is counted when encoded."""
        if self.observer is not None:
            notify(self.observer.event_recorded, event)
        self.dispatcher.enqueue(event)

    def run_sync(self, flow: Flow[T]) -> T:
        """Run a flow with blocking I/O on this client's connection."""
        connection = self.connection
        return run_sync(flow, connection.http.send, connection.tokens)

    def permissions_allow(self, permission: str) -> bool:
        tokens = self.connection.tokens
        return tokens is not None and any_permission_matches(tokens.cached_permissions, permission)

    def close(self, timeout: float) -> None:
        self.dispatcher.close(timeout)
        self.connection.close()


class ClientSurface:
    """The part of the public surface that is the same, synchronous, on both clients."""

    _core: ClientCore

    @property
    def options(self) -> TracengentOptions:
        return self._core.options

    @property
    def token_provider(self) -> AgentTokenProvider | None:
        """The client-credentials token provider; None in ingest-key mode."""
        return self._core.connection.tokens

    @property
    def dropped_count(self) -> int:
        """Events that will never be delivered (queue full, rejected, undeliverable, after close…)."""
        return self._core.dispatcher.dropped_count

    @property
    def observer(self) -> Observer | None:
        """The observer installed on this client (an instrumentation), or None."""
        return self._core.observer

    def set_observer(self, observer: Observer | None) -> Observer | None:
        """Install `observer` (None: remove it); returns the one it replaces.

        An observer sees the client's traces, steps, decisions and recorded events as they
        happen, on the caller's thread (see `tracengent.Observer`); one at a time per client.
        """
        previous, self._core.observer = self._core.observer, observer
        return previous

    def record(self, event: AgentEvent) -> None:
        """Queue an event for delivery; fills agent id, event id, timestamp and tags.

        A deque append: it never blocks (also not an event loop) and never raises.
        """
        self._core.record(event)


EMBEDDED_URL = "http://embedded.tracengent.local"


def embedded(
    options: TracengentOptions, transport: httpx.BaseTransport | None
) -> tuple[TracengentOptions, httpx.BaseTransport]:
    """`base_url="local"`: the process-wide embedded platform, reached through a transport."""
    try:
        from .platform import embedded_transport
    except ImportError as error:
        raise TracengentConfigError(
            f'base_url="local" needs the local platform: pip install "tracengent[platform]" ({error})'
        ) from None
    return dataclasses.replace(options, base_url=EMBEDDED_URL), transport or embedded_transport()
