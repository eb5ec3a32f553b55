"""The agent's access token: fetched once, cached, refreshed before it expires.

One token request at a time, however many threads ask: callers that find no valid token queue
on a lock and the first one fetches. A 401 from the token endpoint means the credentials were
revoked or the agent disabled, so the provider turns itself off instead of asking again; the
dispatcher then counts what it cannot send.

A token answer is checked before the token is used: one that is empty or carries whitespace,
control or non-ASCII characters would be refused by the HTTP library only when it is put in a
header, and that library quotes the illegal value in its error, so the token would travel on in
reasons, exceptions and logs. Errors about the token endpoint are written here, without its
answer's body: an error page may echo the request, and the request carries the client secret.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable

import httpx
import tracengent_api as api

from ._deadline import with_deadline
from ._options import TracengentOptions
from ._permissions import TokenClaims, read_claims
from ._wire import route

logger = logging.getLogger("tracengent")

_REFRESH_LEAD_S = 60.0
"""Refresh this long before expiry (or at 80% of a shorter lifetime)."""
#: An OAuth error code (RFC 6749 5.2: `invalid_client`, ...): safe to repeat, unlike the rest of
#: an error page, which may echo the request.
_OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_TOKEN_ENDPOINT = route("oauth_token")


class TokenState:
    """What the provider knows, and when a token must be replaced; no I/O."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.refresh_at = 0.0
        self.disabled = False
        self.claims: TokenClaims | None = None

    def valid(self, now: float) -> str | None:
        return self.token if self.token is not None and now < self.refresh_at else None

    def accept(self, answer: api.TokenResponse, now: float) -> str:
        lifetime = float(900 if answer.expires_in is None else answer.expires_in)
        lead = min(_REFRESH_LEAD_S, lifetime * 0.2)
        self.token = answer.access_token
        self.refresh_at = now + max(0.0, lifetime - lead)
        self.claims = read_claims(answer.access_token)
        return answer.access_token

    def invalidate(self, token: str | None) -> None:
        """Forget `token` if it is still the current one (a 401 proved it bad)."""
        if token is None or token == self.token:
            self.token = None
            self.refresh_at = 0.0


class AgentTokenProvider:
    """Client-credentials tokens for one agent, shared by every thread of a client."""

    def __init__(
        self,
        options: TracengentOptions,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._state = TokenState()

    @property
    def disabled(self) -> bool:
        """True once the token endpoint refused the credentials; nothing is sent after that."""
        return self._state.disabled

    @property
    def cached_permissions(self) -> list[str]:
        """The permission patterns in the cached token (unverified: for coarse local checks)."""
        claims = self._state.claims
        return list(claims.permissions) if claims else []

    @property
    def claims(self) -> TokenClaims | None:
        return self._state.claims

    def cached(self) -> str | None:
        """The cached token if it is still good, without any I/O."""
        return self._state.valid(self._clock())

    def get_token(self, timeout: float | None = None) -> str | None:
        """A valid token, fetching one if needed; None once the credentials were refused.

        `timeout` bounds the whole wait, the queue behind another thread's fetch included.
        Raises `httpx.HTTPError` or `tracengent_api.ApiError` when the token endpoint cannot be
        reached in time or answers with anything but a token or a 401.
        """
        state = self._state
        token = state.valid(self._clock())
        if token is not None or state.disabled:
            return token
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise httpx.TimeoutException("timed out waiting for another thread's token request")
        try:
            token = state.valid(self._clock())
            if token is not None or state.disabled:
                return token
            left = None if deadline is None else max(0.01, deadline - time.monotonic())
            return self._fetch(left)
        finally:
            self._lock.release()

    def invalidate(self, token: str | None = None) -> None:
        """Drop `token` (default: whatever is cached) so the next caller fetches a new one."""
        with self._lock:
            self._state.invalidate(token)

    def _fetch(self, timeout: float | None) -> str | None:
        options = self._options
        request = api.build_oauth_token(
            api.TokenRequest(
                grant_type=api.GrantType.CLIENT_CREDENTIALS,
                client_id=options.client_id or "",
                client_secret=options.client_secret or "",
            ),
            base_url=options.base_url,
        )
        limit = (
            options.request_timeout_s
            if timeout is None
            else min(timeout, options.request_timeout_s)
        )
        response = self._http.send(with_deadline(request, limit))
        try:
            answer = read_token_answer(response)
        except api.AuthenticationError:
            self._state.disabled = True
            logger.warning(
                "Tracengent: the token endpoint refused client_id %r (revoked or agent disabled); "
                "telemetry is off for this client and governance calls are denied.",
                options.client_id,
            )
            return None
        return self._state.accept(answer, self._clock())


def read_token_answer(response: httpx.Response) -> api.TokenResponse:
    """The token endpoint's answer, or an `ApiError` whose text and body hold none of it.

    A 401 is an `AuthenticationError` (the credentials were refused); any other non-2xx keeps
    its class (so 429 and 5xx stay retryable) and its `Retry-After`, with a message that names
    the status and, at most, the OAuth error code. A token that is not a usable header value is
    an `ApiDecodeError`, like any other answer that is not a token answer.
    """
    try:
        answer = api.parse_oauth_token(response)
    except api.ApiError as error:
        if isinstance(error, api.ApiDecodeError):  # its message names schema problems only
            said = str(error)
        else:
            said = f"{_TOKEN_ENDPOINT} answered {error.status_code}{_oauth_code(error.body)}"
        raise type(error)(
            said, status_code=error.status_code, body="", retry_after=error.retry_after
        ) from None
    problem = malformed_token(answer.access_token)
    if problem is not None:
        raise api.ApiDecodeError(
            f"{_TOKEN_ENDPOINT} answered {response.status_code}: the token endpoint answered "
            f"a malformed access token ({problem}); it was not used",
            status_code=response.status_code,
            body="",
        )
    return answer


def malformed_token(token: str) -> str | None:
    """Why `token` cannot be sent as `Authorization: Bearer <token>`, or None when it can.

    Says what is wrong without quoting the token.
    """
    if not token:
        return "it is empty"
    if not token.isascii():
        return "it contains non-ASCII characters"
    if any(not "!" <= char <= "~" for char in token):
        return "it contains whitespace or control characters"
    return None


def _oauth_code(body: str) -> str:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    code = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(code, str) and _OAUTH_ERROR_CODE.fullmatch(code):
        return f" ({code})"
    return ""
