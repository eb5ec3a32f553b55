"""What the OpenTelemetry binding writes on spans: names, attributes, statuses.

The GenAI names are those of `opentelemetry-semantic-conventions` (incubating `gen_ai_attributes`),
written out here so that only `opentelemetry-api` is needed. The wire contract reports an LLM
call's tokens as one total, hence `gen_ai.usage.total_tokens` rather than input/output counts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from .._events import AgentEvent, EventTypes
from .._observe import Decision

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"
ERROR_TYPE: Final = "error.type"

INVOKE_AGENT: Final = "invoke_agent"
EXECUTE_TOOL: Final = "execute_tool"
CHAT: Final = "chat"

TRACE_ID: Final = "tracengent.trace_id"
EVENT_ID: Final = "tracengent.event_id"
OTEL_TRACE_ID: Final = "otel.trace_id"
OTEL_SPAN_ID: Final = "otel.span_id"
TRACE_FAILED: Final = "the trace failed"

Attributes = dict[str, AttributeValue]


def trace_attributes(agent_id: str, trace_id: str, root_request: Any) -> Attributes:
    attributes: Attributes = {
        GEN_AI_OPERATION_NAME: INVOKE_AGENT,
        GEN_AI_AGENT_ID: agent_id,
        GEN_AI_AGENT_NAME: agent_id,
        TRACE_ID: trace_id,
    }
    _put(attributes, "tracengent.root_request", root_request)
    return attributes


def start_step(tracer: Tracer, parent: Context, kind: str, name: str, trace_id: str) -> Span:
    """A step's span, named for what is known before it runs (a chat's model comes after)."""
    attributes: Attributes = {TRACE_ID: trace_id, "tracengent.step.name": name}
    span_kind = SpanKind.INTERNAL
    if kind == EventTypes.TOOL_CALL:
        span_name = f"{EXECUTE_TOOL} {name}"
        attributes[GEN_AI_OPERATION_NAME] = EXECUTE_TOOL
        attributes[GEN_AI_TOOL_NAME] = name
    elif kind == EventTypes.LLM_CALL:
        span_name, span_kind = CHAT, SpanKind.CLIENT  # the model is another service
        attributes[GEN_AI_OPERATION_NAME] = CHAT
    else:
        span_name = f"{kind} {name}"
    return tracer.start_span(span_name, context=parent, kind=span_kind, attributes=attributes)


def describe_step(span: Span, kind: str, event: AgentEvent) -> None:
    """Add what the recorded event knows: its id, the model and tokens, the cost."""
    attributes: Attributes = {}
    _put(attributes, EVENT_ID, event.event_id)
    if kind == EventTypes.TOOL_CALL:
        _put(attributes, GEN_AI_TOOL_CALL_ID, event.event_id)
    usage = event.usage
    if usage is not None:
        if _put(attributes, GEN_AI_REQUEST_MODEL, usage.model):
            attributes[GEN_AI_RESPONSE_MODEL] = attributes[GEN_AI_REQUEST_MODEL]
            if kind == EventTypes.LLM_CALL:
                span.update_name(f"{CHAT} {usage.model}")
        _put(attributes, GEN_AI_USAGE_TOTAL_TOKENS, usage.tokens)
    cost = event.cost
    if cost is not None:
        _put(attributes, "tracengent.cost.amount", cost.amount)
        _put(attributes, "tracengent.cost.currency", cost.currency)
    span.set_attributes(attributes)


def fail_step(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute(ERROR_TYPE, type(error).__qualname__)
    span.record_exception(error)


def decision_attributes(kind: str, subject: str, decision: Decision) -> Attributes:
    attributes: Attributes = {"tracengent.decision.kind": kind}
    subject_key = {"authorize": "tracengent.permission", "tool": GEN_AI_TOOL_NAME}.get(kind)
    _put(attributes, subject_key or "tracengent.decision.subject", subject)
    _put(attributes, "tracengent.decision.status", decision.status)
    _put(attributes, "tracengent.decision.allowed", decision.allowed)
    _put(attributes, "tracengent.decision.reason", decision.reason)
    _put(attributes, "tracengent.decision.id", decision.decision_id or None)  # local deny: ""
    _put(attributes, "tracengent.approval.id", decision.approval_id or None)
    return attributes


def _put(attributes: Attributes, key: str, value: Any) -> bool:
    """Set `key` when `value` is something an attribute can hold; None and odd values are left out.

    The SDK would drop an invalid value too, but with a warning per span.
    """
    if isinstance(value, str | bool | int | float):
        attributes[key] = value
    elif isinstance(value, Decimal):
        attributes[key] = float(value)
    else:
        return False
    return True
