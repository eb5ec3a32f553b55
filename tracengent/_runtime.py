"""What flows, gates, sessions and traces need of a client, as small Protocols.

They are written against these, not against `ClientCore`, so that only the two client shells
import the core: a flow needs the options (the platform's base URL, deadlines), the credentials
to send, a scrubber for the texts it lets out and an observer to tell; a gate or a session also
a way to run a flow; a trace a way to record and to queue. `ClientCore` is all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ._auth import AgentTokenProvider
    from ._events import AgentEvent, StepFields
    from ._flow import Flow
    from ._observe import Observer
    from ._options import TracengentOptions

T = TypeVar("T")


class Credentials(Protocol):
    """The agent's own credentials: a token provider, or none (the options' ingest key)."""

    @property
    def tokens(self) -> AgentTokenProvider | None: ...


class FlowContext(Protocol):
    """What a platform conversation (a flow) reads: options, credentials, scrubber, observer."""

    @property
    def options(self) -> TracengentOptions: ...

    @property
    def connection(self) -> Credentials: ...

    @property
    def observer(self) -> Observer | None: ...

    def scrub(self, text: object) -> str: ...

    def remember_secret(self, secret: str) -> None:
        """A secret this client holds from now on (a delegated token): scrubbed everywhere."""
        ...


class RecordingContext(FlowContext, Protocol):
    """A flow context that records events too (the egress gate records ungoverned calls)."""

    def record(self, event: AgentEvent) -> None: ...


class Runtime(RecordingContext, Protocol):
    """A recording flow context that can also run a flow to its end with blocking I/O."""

    @property
    def released_approvals(self) -> set[str]:
        """Approvals that released their call through this client (one call each)."""
        ...

    def run_sync(self, flow: Flow[T]) -> T: ...


class SyncRunner(Protocol):
    """The sync client's driver: runs a flow to its end with blocking I/O."""

    def __call__(self, flow: Flow[T]) -> T: ...


class AsyncRunner(Protocol):
    """The async client's driver: runs a flow to its end without blocking the event loop."""

    def __call__(self, flow: Flow[T]) -> Awaitable[T]: ...


class EventQueue(Protocol):
    """Where a trace's steps and Close op go (the dispatcher's queue)."""

    def enqueue_step(self, step: StepFields) -> bool: ...

    def enqueue_trace_close(self, wire: dict[str, Any]) -> None: ...


class Recorder(RecordingContext, Protocol):
    """What a trace needs: record events, queue steps, and the flow context."""

    @property
    def dispatcher(self) -> EventQueue: ...
