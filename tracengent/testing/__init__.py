"""pytest fixtures and assertions over an embedded local platform (`pip install "tracengent[testing]"`).

Installing the extra registers a pytest plugin; a test asks for its fixtures by name:

- `tracengent_platform`: a `PlatformRecorder`, a fresh in-memory platform installed for the test
  as the one every `TracengentOptions.local()` client talks to (the agent's own clients too);
- `tracengent_client` / `async_tracengent_client`: clients of it, closed after the test;
- `tracengent_policy`: the policy (default: the built-in one); override the fixture, or mark a
  test with `@pytest.mark.tracengent_policy("<TOML text>")` or `(path="policy.toml")`.

Example (the built-in policy caps `payments:*` at 5000 EUR)::

    import pytest
    from tracengent import LlmCallResult, ToolDeniedException

    def test_the_agent_cannot_move_that_much(tracengent_platform, tracengent_client):
        with tracengent_client.begin_trace("pay the supplier") as trace:
            trace.track_llm_call("plan", lambda: LlmCallResult("transfer", tokens=350))
            with pytest.raises(ToolDeniedException):
                tracengent_client.tools.guard_function(
                    "transfer_funds", {"amount": 9000}, lambda args: None
                )
        tracengent_platform.assert_tool_denied("transfer_funds", trace.trace_id)
        tracengent_platform.assert_within_budget(trace.trace_id, max_tokens=1_000)

Reads (`events`, `decisions`, `tool_calls`, `traces`, …) flush the clients first, so a test never
calls `flush`. A failed assertion says what it expected, what it found, and shows the trace's
timeline. `async_tracengent_client` is a plain fixture, so it serves pytest-asyncio (auto or
strict mode) and anyio's plugin (asyncio backend) alike. Outside pytest,
`with PlatformRecorder() as platform:` does what the fixture does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._platform import PolicySource
    from ._reader import GatedToolCall
    from ._recorder import PlatformRecorder

# Loaded on first use: the plugin imports this package in every pytest session.
_EXPORTS = {
    "GatedToolCall": "._reader",
    "PlatformRecorder": "._recorder",
    "PolicySource": "._platform",
}

__all__ = ["GatedToolCall", "PlatformRecorder", "PolicySource"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
