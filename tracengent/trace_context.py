"""0.1.0 compatibility alias for ``tracengent.trace_context``; no logic of its own.

tracengent 0.1.0 defined ``current_trace`` here. In 0.2 it lives in a private module and the
package root exports it; new code writes:

    from tracengent import current_trace

This module re-exports the very same object, so code written for 0.1.0 keeps working. Nothing in
the package imports it: ``import tracengent`` does not pay for it.
"""

from __future__ import annotations

from tracengent import current_trace

__all__ = ["current_trace"]
