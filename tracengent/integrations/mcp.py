"""MCP binding: every `tools/call` of an MCP client session is decided by the platform first.

    from mcp import ClientSession
    from tracengent.integrations.mcp import governed_session

    async with ClientSession(read, write) as raw:
        session = governed_session(client, raw)  # an AsyncTracengentClient or a TracengentClient
        await session.initialize()
        result = await session.call_tool("charge_card", {"amount": 120, "card": "4111…"})

`call_tool` asks the platform (`POST /v1/tool-authorize`, transport "mcp") before the server
hears of the call. A denial raises `ToolDeniedException` and a hold for a person raises
`ToolPendingApprovalException`; either way nothing is sent. An allowed call is sent with the
arguments the decision forwards: the platform's redactions and the trace's redactFields applied,
so a secret the policy strips never reaches the MCP server. A platform that cannot be asked is a
denial (fail closed). Every other method of the session is the wrapped session's own.

Each call is recorded as a `tool_call` event with `{"transport": "mcp", "decisionId": …}`
attributes: in the ambient trace when there is one (as a step, so an observer such as the
OpenTelemetry instrumentation sees the decision inside it), else as a plain event. The recorded input is the
forwarded (redacted) arguments; a refused call records none, because a refusal carries no
redactions and the raw arguments may hold exactly the secret a policy exists to strip. A result
with `isError` is MCP's way to report a tool's failure: it is returned, not raised, and recorded
as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Generic, Protocol, TypeVar

try:
    import mcp  # noqa: F401 - fail at import with the fix, not at the first tool call
except ImportError as error:  # pragma: no cover - exercised in a subprocess without mcp
    raise ImportError(
        'tracengent.integrations.mcp needs the MCP SDK: pip install "tracengent[mcp]"'
    ) from error

from .._async_client import AsyncTracengentClient
from .._client import TracengentClient
from .._events import AgentEvent, EventStatuses, EventTypes
from .._jsonsafe import to_jsonable
from .._tools import ToolGuardResult, raise_unless_allowed
from .._trace import Trace, _Step, current_trace
from .._wire import APPROVAL_ID, DECISION_ID

__all__ = ["GovernedSession", "McpToolError", "ToolSession", "governed_session"]

_log = logging.getLogger("tracengent")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class ToolSession(Protocol[R_co]):
    """What can be governed: an `mcp.ClientSession`, an `mcp.Client`, or alike."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> R_co: ...


class McpToolError(Exception):
    """A tool result with `isError`, as the error of its recorded step. Never raised: MCP
    returns a tool's failure as a result, and so does the governed session."""


class GovernedSession(Generic[R]):
    """An MCP session whose `call_tool` is governed; everything else is the wrapped session's."""

    def __init__(
        self, client: AsyncTracengentClient | TracengentClient, session: ToolSession[R]
    ) -> None:
        self._client = client
        #: the session this one governs (calls made on it directly are not governed)
        self.wrapped = session

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> R:
        """The wrapped `call_tool`, sent only if allowed and with the forwarded arguments.

        Raises `ToolDeniedException` or `ToolPendingApprovalException` when the call is refused;
        every other argument is passed through unchanged.
        """
        trace = current_trace()
        step = None if trace is None else trace._start_step(EventTypes.TOOL_CALL, name)
        started = time.perf_counter()
        guard: ToolGuardResult | None = None
        forwarded: Any = None  # nothing is recorded as input until a decision redacted it
        try:
            guard = await self._authorize(name, arguments)
            raise_unless_allowed(guard.decision)
            forwarded = guard.arguments
            started = time.perf_counter()
            result = await self.wrapped.call_tool(name, forwarded, *args, **kwargs)
        except BaseException as error:  # cancellation too: the step must end either way
            self._record(trace, step, name, started, guard, forwarded, None, error)
            raise
        output, failure = _outcome(result)
        self._record(trace, step, name, started, guard, forwarded, output, failure)
        return result

    async def _authorize(self, name: str, arguments: Any) -> ToolGuardResult:
        client = self._client
        if isinstance(client, AsyncTracengentClient):
            return await client.tools.authorize_mcp(name, arguments)
        # The sync client blocks on the platform: in a worker thread, the loop keeps running.
        # to_thread copies the context, so the ambient trace goes along.
        return await asyncio.to_thread(client.tools.authorize_mcp, name, arguments)

    def _record(
        self,
        trace: Trace | None,
        step: _Step | None,
        name: str,
        started: float,
        guard: ToolGuardResult | None,
        input: Any,
        output: Any,
        error: BaseException | None,
    ) -> None:
        # Telemetry never raises into the agent, and must not replace the error being re-raised.
        with contextlib.suppress(Exception):
            attributes: dict[str, Any] = {"transport": "mcp"}
            if guard is not None and guard.decision.decision_id is not None:
                attributes[DECISION_ID] = guard.decision.decision_id
            if guard is not None and guard.decision.approval_id is not None:
                attributes[APPROVAL_ID] = guard.decision.approval_id
            if trace is not None:
                kind = EventTypes.TOOL_CALL
                trace._finish(
                    kind, name, started, input, output, error, None, None, step, attributes
                )
                return
            event = AgentEvent(
                type=EventTypes.TOOL_CALL,
                name=name,
                status=EventStatuses.SUCCESS if error is None else EventStatuses.FAILURE,
                input=input,
                output=output if error is None else {"error": str(error)},
                attributes=attributes,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
            self._client.record(event)

    # --- pass-through -------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the wrapper lacks; its own state missing (mid-construction,
        # unpickling) must not recurse.
        if name in ("wrapped", "_client"):
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    async def __aenter__(self) -> GovernedSession[R]:
        await self.wrapped.__aenter__()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        return await self.wrapped.__aexit__(*exc_info)  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"GovernedSession({self.wrapped!r})"


def governed_session(
    client: AsyncTracengentClient | TracengentClient, session: ToolSession[R]
) -> GovernedSession[R]:
    """Govern `session`'s tool calls with `client` (see the module doc)."""
    return GovernedSession(client, session)


def _outcome(result: Any) -> tuple[Any, McpToolError | None]:
    """What to record of a result: its structured content, else its text; never raises."""
    try:
        content = _field(result, "content")
        if content is None:  # not a CallToolResult (e.g. an input-required result): as is
            return to_jsonable(result), None
        texts = [
            block.text
            for block in content
            if getattr(block, "type", None) == "text" and isinstance(block.text, str)
        ]
        text = "\n".join(texts) if texts else None
        if _field(result, "is_error", "isError"):
            return None, McpToolError(text or "the tool reported an error")
        structured = _field(result, "structured_content", "structuredContent")
        return to_jsonable(structured if structured is not None else text), None
    except Exception:  # noqa: BLE001 - an odd result is recorded as such, and still returned
        _log.debug("tracengent: could not describe an MCP tool result", exc_info=True)
        return to_jsonable(result), None


def _field(result: Any, *names: str) -> Any:
    """The first field present: mcp 2 names them in snake_case, mcp 1 in camelCase."""
    for name in names:
        value = getattr(result, name, None)
        if value is not None:
            return value
    return None
