"""Wire names the SDK writes by hand into free-form JSON, taken from the generated models.

Most of what the SDK sends is built by the generated request builders; a few keys land in
free-form objects (an authorize context, a tool call's recorded attributes), and messages name
endpoints. Naming them from `Model.model_fields[...].alias` and the generated route table keeps
schema/openapi.yaml their one spelling: a field renamed there is renamed here on `make generate`,
and one that no longer exists fails at import. The platform names what it reads back the same
way (`tracengent/platform/_wire.py`); a test keeps camelCase keys and `/v1/` paths out of
hand-written code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import tracengent_api as api
from pydantic import BaseModel

from ._grammar.wire import wire_name

M = TypeVar("M", bound=BaseModel)


def as_model(model: type[M], data: M | Mapping[str, Any]) -> M:
    """`data` as a `model`: itself when it is one already, else validated (ValidationError)."""
    return data if isinstance(data, model) else model.model_validate(data)


def route(operation: str) -> str:
    """`METHOD /path` of the operation with id `operation`, as messages name an endpoint."""
    found = next(r for r in api.routes.ROUTES if r.operation == operation)
    return f"{found.method} {found.path}"


#: the authorize context key that reserves LLM token budget for `llm:call`
ESTIMATED_TOKENS = wire_name(api.AuthorizeContext, "estimated_tokens")
#: what a recorded tool call's attributes name its HTTP status, decision and approval
STATUS_CODE = wire_name(api.ToolCallAttributes, "status_code")
DECISION_ID = wire_name(api.ToolCallAttributes, "decision_id")
APPROVAL_ID = wire_name(api.ToolCallAttributes, "approval_id")
#: what a recorded llm_call's attributes name the token reservation it reconciles
RESERVATION_ID = wire_name(api.LlmCallAttributes, "reservation_id")
