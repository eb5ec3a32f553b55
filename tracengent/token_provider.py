"""0.1.0 compatibility alias for ``tracengent.token_provider``; no logic of its own.

tracengent 0.1.0 defined ``AgentTokenProvider`` here. In 0.2 it lives in a private module and the
package root exports it; new code writes:

    from tracengent import AgentTokenProvider

This module re-exports the very same object, so code written for 0.1.0 keeps working. Nothing in
the package imports it: ``import tracengent`` does not pay for it.
"""

from __future__ import annotations

from tracengent import AgentTokenProvider

__all__ = ["AgentTokenProvider"]
