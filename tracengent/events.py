"""0.1.0 compatibility alias for ``tracengent.events``; no logic of its own.

tracengent 0.1.0 defined the event model here: ``Actor``, ``AgentEvent``, ``EventStatuses``,
``EventTypes``, ``LlmCallResult``, ``Money``, ``Usage``, and the ``Number`` type alias of its
amounts. In 0.2 they live in private modules and the package root exports all but ``Number``;
new code writes:

    from tracengent import Actor, AgentEvent, EventStatuses, EventTypes, LlmCallResult, Money, Usage

``Number`` (``float | int | Decimal``, unchanged) is not a root name; it is re-exported here from
the private ``tracengent._events``. This module re-exports the very same objects, so code written
for 0.1.0 keeps working. Nothing in the package imports it: ``import tracengent`` does not pay for
it.
"""

from __future__ import annotations

from tracengent import Actor, AgentEvent, EventStatuses, EventTypes, LlmCallResult, Money, Usage
from tracengent._events import Number

__all__ = [
    "Actor",
    "AgentEvent",
    "EventStatuses",
    "EventTypes",
    "LlmCallResult",
    "Money",
    "Number",
    "Usage",
]
