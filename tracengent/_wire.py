"""Wire names the SDK writes by hand into free-form JSON, taken from the generated models.

Most of what the SDK sends is built by the generated request builders; a few keys land in
free-form objects (an authorize context, a tool call's recorded attributes). Naming them from
`Model.model_fields[...].alias` keeps schema/openapi.yaml their one spelling: a field renamed
there is renamed here on `make generate`, and one that no longer exists fails at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import tracengent_api as api
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def as_model(model: type[M], data: M | Mapping[str, Any]) -> M:
    """`data` as a `model`: itself when it is one already, else validated (ValidationError)."""
    return data if isinstance(data, model) else model.model_validate(data)


def wire_name(model: type[BaseModel], field: str) -> str:
    """The JSON key of `model`'s field `field` (its alias, or its own name when it has none)."""
    return model.model_fields[field].alias or field


#: the authorize context key that reserves LLM token budget for `llm:call`
ESTIMATED_TOKENS = wire_name(api.AuthorizeContext, "estimated_tokens")
#: a decision's id and its approval's, as a recorded tool call's attributes name them
DECISION_ID = wire_name(api.AuthorizeResponse, "decision_id")
APPROVAL_ID = wire_name(api.AuthorizeResponse, "approval_id")
