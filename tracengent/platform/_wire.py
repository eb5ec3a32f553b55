"""Wire names the platform reads from stored JSON, taken from the generated models' aliases.

The platform keeps events, closes and contexts as the JSON that arrived, so reading them back
means naming wire keys. Naming them here, from `Model.model_fields[...].alias`, keeps openapi.yaml
their one spelling: a field renamed in the schema renames it here on `make generate`, and a field
that no longer exists fails at import instead of reading None forever.
"""

from __future__ import annotations

import tracengent_api as api

from .._grammar.wire import wire_name

EVENT_ID = wire_name(api.Event, "event_id")
AGENT_ID = wire_name(api.Event, "agent_id")
TRACE_ID = wire_name(api.Event, "trace_id")
OCCURRED_AT = wire_name(api.Event, "occurred_at")
ROOT_REQUEST = wire_name(api.Event, "root_request")
DURATION_MS = wire_name(api.Event, "duration_ms")
ESTIMATED_TOKENS = wire_name(api.AuthorizeContext, "estimated_tokens")
MAX_AMOUNT = wire_name(api.AttenuateRequest, "max_amount")
EXPIRES_IN_SECONDS = wire_name(api.AttenuateRequest, "expires_in_seconds")
RESERVATION_ID = wire_name(api.LlmCallAttributes, "reservation_id")
