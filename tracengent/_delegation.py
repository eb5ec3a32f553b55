"""Delegated authority and agent-to-agent hops: authority handed on can only shrink.

A `DelegatedSession` acts under a delegated token, sent as the bearer of its calls and never
mixed with the agent's own credentials. Before asking the platform to attenuate, the SDK checks
what it can locally (a delegated token, not expired, every requested permission covered, no
larger amount) so that a widening is refused without a round trip; the platform checks again.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import tracengent_api as api
from pydantic import ValidationError

from ._authorization import AuthDecision, authorize_flow, call_platform, failure, finite_amount
from ._errors import DelegationException
from ._events import Number
from ._flow import Flow
from ._jsonsafe import to_jsonable
from ._jwks import verify_flow
from ._permissions import TokenClaims, any_permission_matches, read_claims

if TYPE_CHECKING:
    from ._runtime import Runtime


class _SessionBase:
    def __init__(self, core: Runtime, delegated_token: str, verified: bool) -> None:
        self._core = core
        # Checked against the platform's keys before the token is first sent (`_verified`);
        # a child is checked by the attenuation that received it.
        self._verified = verified
        token = delegated_token.strip() if isinstance(delegated_token, str) else ""
        # A token that cannot travel in a header (and whose refusal by the HTTP library would
        # quote it) makes a session that denies and never sends.
        self._unusable = (
            "the delegated token is empty or contains whitespace or control characters"
            if not token or any(c.isspace() or not c.isprintable() for c in token)
            else None
        )
        #: The delegated bearer token this session acts under.
        self.token = token
        core.remember_secret(token)  # it is a secret of this client's from now on
        self._claims = (None if self._unusable else read_claims(token)) or TokenClaims()
        #: The grant this token was minted from.
        self.grant_id = self._claims.grant_id
        #: The root principal the chain acts for.
        self.acting_for = self._claims.acting_for
        #: The delegation chain, root first.
        self.chain = list(self._claims.delegation_chain)
        #: The permission patterns this token may exercise.
        self.delegated_permissions = list(self._claims.delegated_permissions)

    @property
    def is_delegated(self) -> bool:
        return bool(self.grant_id)

    @property
    def expires_at(self) -> datetime | None:
        exp = self._claims.exp
        return None if exp is None else datetime.fromtimestamp(exp, timezone.utc)

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}(grant_id={self.grant_id!r}, chain={self.chain!r})"

    def _verify(self) -> Flow[None]:
        """Raise `DelegationException` unless the token checks out offline (once per session).

        An unusable token is never sent, so it needs no check: its session denies."""
        if not self._verified and not self._unusable:
            yield from verify_flow(self._core, self.token, self._core.options.agent_id)
            self._verified = True

    def _authorize_flow(
        self, permission: str, context: Mapping[str, Any] | None
    ) -> Flow[AuthDecision]:
        yield from self._verify()
        if self._unusable:
            return AuthDecision.deny(self._unusable)
        return (yield from authorize_flow(self._core, permission, context, bearer=self.token))

    def _attenuate_flow(
        self,
        callee_agent_id: str,
        permissions: Iterable[str],
        max_amount: Number | None,
        expires_in_seconds: int | None,
        reason: str | None,
    ) -> Flow[str]:
        yield from self._verify()
        requested = _requested(permissions)
        _check_arguments(callee_agent_id, max_amount, expires_in_seconds)
        self._check_locally(requested, max_amount)
        try:
            body = api.encode_attenuate(
                api.AttenuateRequest(
                    granted_to_agent_id=callee_agent_id,
                    permissions=requested,
                    max_amount=None if max_amount is None else to_jsonable(max_amount),  # type: ignore[arg-type]
                    expires_in_seconds=expires_in_seconds,
                    reason=reason,
                )
            )
        except (ValidationError, ValueError, TypeError) as error:
            raise DelegationException(
                self._core.scrub(f"attenuate not sent: the request is not valid ({error})")
            ) from None
        build = functools.partial(
            api.build_attenuate, self.grant_id or "", body, base_url=self._core.options.base_url
        )
        try:
            response = yield from call_platform(self._core, build, bearer=self.token)
            child = api.parse_attenuate(response).token.access_token
        except api.ApiError as error:
            said = error.reason or error.body
            raise DelegationException(
                self._core.scrub(
                    f"the platform refused the attenuation ({error.status_code}): {said}"
                ),
                status_code=error.status_code,
            ) from None
        except Exception as error:  # noqa: BLE001 - no child token without an answer
            raise DelegationException(self._core.scrub(failure("attenuate", error))) from None
        if not child.strip():  # a session on it could only ever deny: say so now, not later
            raise DelegationException("the platform answered the attenuation with an empty token")
        self._core.remember_secret(child)
        yield from verify_flow(self._core, child, callee_agent_id)  # the callee's, signed
        return child

    def _check_locally(self, requested: list[str], max_amount: Number | None) -> None:
        if self._unusable:
            raise DelegationException(self._unusable)
        if not self.is_delegated:
            raise DelegationException("this session's token is not a delegated token (no grant_id)")
        if self._claims.expired(time.time()):
            raise DelegationException(f"the delegated token of grant {self.grant_id} has expired")
        for permission in requested:
            if not any_permission_matches(self.delegated_permissions, permission):
                raise DelegationException(
                    f"'{permission}' is not covered by this session's delegated permissions "
                    f"{self.delegated_permissions}: attenuation can only narrow authority"
                )
        ceiling = self._claims.max_amount
        if ceiling is not None and finite_amount(ceiling) is None:
            raise DelegationException(
                f"this grant's max_amount claim ({ceiling!r}) is not a number: it cannot be narrowed"
            )
        if max_amount is not None and ceiling is not None and max_amount > ceiling:
            raise DelegationException(
                f"maxAmount {max_amount} is larger than this grant's {ceiling}: attenuation can only narrow"
            )


def _requested(permissions: Iterable[str]) -> list[str]:
    """The permissions asked for, as a list of names (a lone string is one name, not letters)."""
    if isinstance(permissions, str):
        raise DelegationException(
            f"permissions must be a list of permission names, not the string {permissions!r}: "
            f"pass [{permissions!r}]"
        )
    try:
        requested = list(permissions)
    except TypeError:
        raise DelegationException(
            f"permissions must be a list of permission names, not {type(permissions).__name__}"
        ) from None
    wrong = [p for p in requested if not isinstance(p, str) or not p.strip()]
    if wrong or not requested:
        raise DelegationException(
            f"permissions must be non-empty permission names, got {requested!r}"
        )
    return requested


def _check_arguments(
    callee_agent_id: object, max_amount: object, expires_in_seconds: object
) -> None:
    """Arguments a narrowing cannot be checked with are refused, naming the argument."""
    if not isinstance(callee_agent_id, str) or not callee_agent_id.strip():
        raise DelegationException(
            f"callee_agent_id must be the agent id to hand the grant to, not {callee_agent_id!r}"
        )
    if max_amount is not None and finite_amount(max_amount) is None:
        raise DelegationException(
            f"max_amount must be a finite number >= 0 (e.g. 500), not {max_amount!r}"
        )
    if expires_in_seconds is not None and (
        isinstance(expires_in_seconds, bool)
        or not isinstance(expires_in_seconds, int)
        or expires_in_seconds <= 0
    ):
        raise DelegationException(
            f"expires_in_seconds must be a whole number of seconds > 0, not {expires_in_seconds!r}"
        )


class DelegatedSession(_SessionBase):
    """Acting under a delegated token, with the sync client; checked when it is made."""

    def __init__(self, core: Runtime, delegated_token: str, verified: bool = False) -> None:
        super().__init__(core, delegated_token, verified)
        core.run_sync(self._verify())  # a token that fails raises here, before any use

    def authorize(self, permission: str, context: Mapping[str, Any] | None = None) -> AuthDecision:
        """Authorize under the delegated authority; the decision reports acting_for and chain."""
        return self._core.run_sync(self._authorize_flow(permission, context))

    def attenuate_for_call(
        self,
        callee_agent_id: str,
        permissions: Iterable[str],
        *,
        max_amount: Number | None = None,
        expires_in_seconds: int | None = None,
        reason: str | None = None,
    ) -> DelegatedSession:
        """A narrower child session to hand to `callee_agent_id`; raises `DelegationException`."""
        flow = self._attenuate_flow(
            callee_agent_id, permissions, max_amount, expires_in_seconds, reason
        )
        return DelegatedSession(self._core, self._core.run_sync(flow), verified=True)


class AsyncDelegatedSession(_SessionBase):
    """Acting under a delegated token, with the async client; checked on its first use (making
    one is not a coroutine), before anything is sent with the token."""

    def __init__(
        self,
        core: Runtime,
        delegated_token: str,
        run: Callable[[Flow[Any]], Awaitable[Any]],
        verified: bool = False,
    ) -> None:
        super().__init__(core, delegated_token, verified)
        self._run = run

    async def authorize(
        self, permission: str, context: Mapping[str, Any] | None = None
    ) -> AuthDecision:
        decision: AuthDecision = await self._run(self._authorize_flow(permission, context))
        return decision

    async def attenuate_for_call(
        self,
        callee_agent_id: str,
        permissions: Iterable[str],
        *,
        max_amount: Number | None = None,
        expires_in_seconds: int | None = None,
        reason: str | None = None,
    ) -> AsyncDelegatedSession:
        flow = self._attenuate_flow(
            callee_agent_id, permissions, max_amount, expires_in_seconds, reason
        )
        return AsyncDelegatedSession(self._core, await self._run(flow), self._run, verified=True)
