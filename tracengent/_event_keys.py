"""An event's wire keys and their order, read once at import from the generated models.

`tracengent_api.models.Event` and friends are the one spelling of every key the encoder writes
and the validator names in its problems (`cost.amount`), so this module spells no wire key.
"""

from __future__ import annotations

from pydantic import BaseModel
from tracengent_api import models as wire


def aliases(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, field.alias or name) for name, field in model.model_fields.items())


MONEY_KEYS = aliases(wire.Money)
USAGE_KEYS = aliases(wire.Usage)
ACTOR_KEYS = aliases(wire.Actor)
CLOSE_KEYS = aliases(wire.TraceClose)

# The hot path builds the event object field by field, in this order; it must be the generated
# model's order (the contract's key order). A regenerated model with other fields fails here, at
# import, rather than sending keys out of order.
EVENT_FIELDS = (
    "event_id", "idempotency_key", "agent_id", "trace_id", "parent_event_id", "type", "name",
    "status", "cost", "usage", "actor", "input", "output", "attributes", "occurred_at",
    "duration_ms", "tags", "root_request",
)  # fmt: skip
if tuple(wire.Event.model_fields) != EVENT_FIELDS:  # pragma: no cover - a contract change
    raise ImportError("tracengent_api.models.Event changed: update EVENT_FIELDS in _event_keys.py")
(
    K_ID, K_IDEMPOTENCY, K_AGENT, K_TRACE, K_PARENT, K_TYPE, K_NAME, K_STATUS, K_COST, K_USAGE,
    K_ACTOR, K_INPUT, K_OUTPUT, K_ATTRIBUTES, K_AT, K_DURATION, K_TAGS, K_ROOT,
) = (wire.Event.model_fields[name].alias or name for name in EVENT_FIELDS)  # fmt: skip
MONEY_NAMES, USAGE_NAMES, ACTOR_NAMES = dict(MONEY_KEYS), dict(USAGE_KEYS), dict(ACTOR_KEYS)
F_AMOUNT = f"{K_COST}.{MONEY_NAMES['amount']}"
F_CURRENCY = f"{K_COST}.{MONEY_NAMES['currency']}"
F_TOKENS = f"{K_USAGE}.{USAGE_NAMES['tokens']}"
F_MODEL = f"{K_USAGE}.{USAGE_NAMES['model']}"
F_USER = f"{K_ACTOR}.{ACTOR_NAMES['user_id']}"
