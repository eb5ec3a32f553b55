"""Who is calling: an agent by its ingest key or its bearer token, and what a delegated token
carries. Every failure is a 401 (or a 403 for a plain token where a delegated one is needed).

Tokens are this platform's own EdDSA JWTs (`_keys`); a delegated token is only as good as its
grant in the store, so revoking a grant (or its ancestor) refuses its tokens at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from . import _decide as decide
from ._keys import SigningKeys
from ._policy import AgentPolicy, Policy
from ._requests import HttpError
from ._store import Store


@dataclass(frozen=True)
class Caller:
    agent: AgentPolicy
    grant: decide.Grant | None
    token_exp: float | None


def _readable_amount(value: Any) -> bool:
    """A finite amount of 0 or more (a JSON number, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


class Authenticator:
    """Reads a request's credentials against the policy, the signing keys and the grants."""

    def __init__(
        self,
        policy: Policy,
        keys: SigningKeys,
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy, self._keys, self._store, self._clock = policy, keys, store, clock

    def caller(self, headers: Mapping[str, str], *, delegated_only: bool = False) -> Caller:
        """The agent behind `headers` (lower-cased names); `delegated_only`: a delegated token."""
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return self._bearer(authorization[7:].strip(), delegated_only)
        key = headers.get("x-ingest-key")
        if key is not None and not delegated_only:
            agent = self._policy.agent_by_ingest_key(key)
            if agent is None:
                raise HttpError(401, "unauthorized", "unknown ingest key")
            if agent.disabled:
                raise HttpError(401, "unauthorized", f"agent {agent.agent_id} is disabled")
            return Caller(agent, None, None)
        wanted = "a delegated bearer token" if delegated_only else "a bearer token or X-Ingest-Key"
        raise HttpError(401, "unauthorized", f"missing credentials: send {wanted}")

    def _bearer(self, token: str, delegated_only: bool) -> Caller:
        try:
            claims = self._keys.verify(token)
        except jwt.ExpiredSignatureError:
            raise HttpError(401, "unauthorized", "token expired") from None
        except jwt.PyJWTError as error:
            raise HttpError(
                401, "unauthorized", f"invalid token ({type(error).__name__})"
            ) from None
        agent = self._policy.agent(str(claims.get("sub")))
        if agent is None or agent.disabled:
            raise HttpError(
                401, "unauthorized", f"agent {claims.get('sub')!r} is unknown or disabled"
            )
        grant_id = claims.get("grant_id")
        if grant_id is None:
            if delegated_only:
                raise HttpError(403, "forbidden", "attenuation needs a delegated token")
            return Caller(agent, None, float(claims["exp"]))
        if not self._store.grant_usable(str(grant_id), self._clock()):
            raise HttpError(401, "unauthorized", f"grant {grant_id} is revoked or expired")
        max_amount = claims.get("max_amount")
        if max_amount is not None and not _readable_amount(max_amount):
            # Only this platform signs, but a token minted before NaN was refused may say so:
            # a limit that cannot be read grants nothing rather than everything.
            raise HttpError(401, "unauthorized", f"grant {grant_id} has an unreadable max_amount")
        grant = decide.Grant(
            grant_id=str(grant_id),
            acting_for=str(claims.get("acting_for", "")),
            chain=tuple(str(c) for c in claims.get("delegation_chain", ())),
            permissions=tuple(str(p) for p in claims.get("delegated_permissions", ())),
            max_amount=None if max_amount is None else float(max_amount),
        )
        return Caller(agent, grant, float(claims["exp"]))
