"""0.1.0 compatibility alias for ``tracengent.redaction``; no logic of its own.

tracengent 0.1.0 defined ``MASK_TOKEN``, ``Redaction`` and the function ``apply(body_json,
rules)`` here (its package root exported ``apply`` as ``apply_redactions``). In 0.2 they live in
a private module (``tracengent._redaction``) and the package root exports them; new code writes:

    from tracengent import MASK_TOKEN, Redaction, apply_redactions

``apply`` here is ``apply_redactions`` itself: the same call, ``apply(json_text, rules)``, with
0.2's path grammar (a superset of 0.1.0's) and its totality (it never raises). This module
re-exports the very same objects, so ``tracengent.redaction.apply(...)`` and ``from
tracengent.redaction import apply`` keep working. Nothing in the package imports it: ``import
tracengent`` does not pay for it.
"""

from __future__ import annotations

from tracengent import MASK_TOKEN, Redaction, apply_redactions as apply

__all__ = ["MASK_TOKEN", "Redaction", "apply"]
