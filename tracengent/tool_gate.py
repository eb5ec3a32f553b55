"""0.1.0 compatibility alias for ``tracengent.tool_gate``; no logic of its own.

tracengent 0.1.0 defined ``ToolGate`` and ``ToolGuardResult`` here. In 0.2 they live in private
modules and the package root exports them; new code writes:

    from tracengent import ToolGate, ToolGuardResult

This module re-exports the very same objects, so code written for 0.1.0 keeps working. Nothing in
the package imports it: ``import tracengent`` does not pay for it.
"""

from __future__ import annotations

from tracengent import ToolGate, ToolGuardResult

__all__ = ["ToolGate", "ToolGuardResult"]
