"""A wire key's spelling, read from the generated pydantic model that declares it.

Hand-written code that writes or reads free-form JSON (an authorize context, recorded
attributes, stored events) names keys through this, so schema/openapi.yaml stays their one
spelling and a key the schema no longer has fails at import instead of reading None forever.
"""

from __future__ import annotations

from pydantic import BaseModel


def wire_name(model: type[BaseModel], field: str) -> str:
    """The JSON key of `model`'s field `field` (its alias, or its own name when it has none)."""
    return model.model_fields[field].alias or field
