"""0.1.0 compatibility alias for ``tracengent.dispatcher``; it re-exports nothing, on purpose.

tracengent 0.1.0 defined one class here, ``EventDispatcher``: the client's background queue, built
as ``EventDispatcher(options, http, auth)`` from the private ``tracengent._auth.AgentAuth`` and
driven by ``start()`` / ``enqueue()`` / ``stop()``. It was never exported by the package root. 0.2
has no public equivalent: its dispatcher (the private ``tracengent._dispatch.EventDispatcher``) is
built from a private connection and has ``flush()`` / ``close()`` instead of ``start()`` /
``stop()``. Handed out under the 0.1.0 name it would import fine and then fail at the first
call, so it is not. What 0.1.0 code used the dispatcher for is on the client:

    client.record(event)   # enqueue
    client.dropped_count   # dropped_count
    client.flush(timeout)  # wait for delivery
    client.close(timeout)  # stop

The module exists so that ``import tracengent.dispatcher`` keeps working; ``from
tracengent.dispatcher import EventDispatcher`` fails at once with an ImportError.
"""

from __future__ import annotations

__all__: list[str] = []
