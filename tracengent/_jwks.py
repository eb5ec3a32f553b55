"""Offline checks of a delegated token against the platform's public keys (its JWKS).

A token handed to this agent out of band must not be trusted blindly: before a session sends it
anywhere, its signature, expiry, issuer and audience are checked against the keys the platform
publishes at `/.well-known/jwks.json`. The key set is fetched once per client and kept for
`TTL_S`; a token naming an unknown key (`kid`) refetches it, at most once per `REFETCH_AFTER_S`,
so a hostile stream of tokens with random kids costs one request, not one per token.

A platform without a JWKS (404) keeps the old behaviour (the platform alone checks the token),
with one info log per client; the 404 is kept for the TTL too. Anything else that prevents the
check (5xx, a timeout, an unreadable key set) is a deny, unless the client opted into
`tool_governance_fail_open`: a limit that cannot be checked is not a pass.

The algorithm is the key's own (EdDSA for the platform's Ed25519 keys): a token saying
`alg: none`, or HS256 with the public key as its secret, is refused. Symmetric keys in a key set
are ignored. PyJWT (and `cryptography`, for EdDSA) are imported only here, on first use.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import tracengent_api as api

from ._errors import DelegationException
from ._flow import Flow, Send
from ._logs import logger

if TYPE_CHECKING:
    from ._runtime import FlowContext

#: How long a fetched key set (or a platform's 404) is trusted before it is asked again.
TTL_S = 300.0
#: Least time between two fetches outside the TTL (an unknown kid, a failed fetch).
REFETCH_AFTER_S = 30.0
#: The issuer the platform signs its tokens as.
ISSUER = "tracengent-local"

_PATH = next(route.path for route in api.routes.ROUTES if route.operation == "get_jwks")
_ASYMMETRIC = frozenset({"OKP", "EC", "RSA"})


@dataclass(frozen=True)
class KeySet:
    """What the last fetch learned: the keys by kid, that there are none (404), or why not."""

    fetched: float  # time.monotonic()
    keys: Mapping[str, Any] = field(default_factory=dict)  # kid -> jwt.PyJWK
    absent: bool = False
    problem: str | None = None

    def fresh(self, now: float) -> bool:
        return now - self.fetched < (REFETCH_AFTER_S if self.problem else TTL_S)


class _Cache:
    """One client's key set; a client's flows may run on several threads at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: KeySet | None = None
        self.told_absent = False


_CACHES: weakref.WeakKeyDictionary[FlowContext, _Cache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _cache_of(core: FlowContext) -> _Cache:
    with _CACHES_LOCK:
        cache = _CACHES.get(core)
        if cache is None:
            cache = _CACHES[core] = _Cache()
        return cache


def verify_flow(core: FlowContext, token: str, audience: str) -> Flow[None]:
    """Return when `token` verifies (or cannot be checked and that is allowed); otherwise raise
    `DelegationException` saying why, before anything is sent with the token.

    `audience` is the agent the token must be for: its `aud`, or else its `sub` (the agent the
    platform granted it to)."""
    cache = _cache_of(core)
    keys = cache.keys
    if keys is None or not keys.fresh(time.monotonic()):
        keys = yield from _fetch(core, cache)
    if keys.absent or not _checkable(core, keys):
        return
    kid = _kid_of(token)
    key = keys.keys.get(kid)
    if key is None and time.monotonic() - keys.fetched >= REFETCH_AFTER_S:
        keys = yield from _fetch(core, cache)  # a key rotated since: refetch, once
        if keys.absent or not _checkable(core, keys):
            return
        key = keys.keys.get(kid)
    if key is None:
        raise DelegationException(
            core.scrub(f"unknown key: the token's kid {kid[:64]!r} is not in the platform's JWKS")
        )
    _check(core, token, key, audience)


def _fetch(core: FlowContext, cache: _Cache) -> Flow[KeySet]:
    request = httpx.Request("GET", core.options.base_url.rstrip("/") + _PATH)
    try:
        response: httpx.Response = yield Send(request, core.options.authorize_timeout_s)
        keys = _read(response)
    except Exception as error:  # noqa: BLE001 - any failure to fetch is a reason, kept
        keys = KeySet(time.monotonic(), problem=f"{type(error).__name__}: {error}")
    with cache.lock:
        cache.keys = keys
        tell = keys.absent and not cache.told_absent
        cache.told_absent = cache.told_absent or keys.absent
    if tell:
        logger.info(
            "Tracengent: the platform has no JWKS (404): delegated tokens are checked by the "
            "platform only, not offline"
        )
    return keys


def _read(response: httpx.Response) -> KeySet:
    now = time.monotonic()
    if response.status_code == 404:
        return KeySet(now, absent=True)
    if response.status_code != 200:
        return KeySet(now, problem=f"the JWKS answered {response.status_code}")
    from jwt import PyJWK, PyJWKError  # deferred: only verification needs cryptography

    keys: dict[str, Any] = {}
    for jwk in api.Jwks.model_validate_json(response.content).keys:
        if jwk.get("kty") not in _ASYMMETRIC or jwk.get("use", "sig") != "sig":
            continue  # a symmetric key would let a public value sign
        try:
            keys[str(jwk.get("kid", ""))] = PyJWK(jwk)
        except PyJWKError:
            continue  # a key this SDK cannot use verifies nothing
    return KeySet(now, keys=keys)


def _checkable(core: FlowContext, keys: KeySet) -> bool:
    """False when the key set could not be had and the client fails open; raises when closed."""
    if keys.problem is None:
        return True
    why = core.scrub(f"the delegated token cannot be verified: no JWKS ({keys.problem})")
    if not core.options.tool_governance_fail_open:
        raise DelegationException(why)
    logger.warning("Tracengent: %s; going on unverified (tool_governance_fail_open)", why)
    return False


def _kid_of(token: str) -> str:
    import jwt

    try:
        kid = jwt.get_unverified_header(token).get("kid", "")
    except jwt.PyJWTError:
        raise DelegationException(
            "bad signature: the delegated token is not a signed JWT"
        ) from None
    return kid if isinstance(kid, str) else ""


def _check(core: FlowContext, token: str, key: Any, audience: str) -> None:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],  # the key's, never the token's say
            issuer=ISSUER,
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise DelegationException("expired: the delegated token has expired") from None
    except jwt.InvalidIssuerError:
        raise DelegationException(f"wrong issuer: the token was not issued by {ISSUER!r}") from None
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.DecodeError):
        raise DelegationException(
            "bad signature: the delegated token is not signed by the platform's key"
        ) from None
    except jwt.PyJWTError as error:
        raise DelegationException(
            core.scrub(f"invalid delegated token ({type(error).__name__}: {error})")
        ) from None
    meant_for = claims.get("aud", claims.get("sub"))
    if not (meant_for == audience or (isinstance(meant_for, list) and audience in meant_for)):
        raise DelegationException(
            core.scrub(f"wrong audience: the token is for {meant_for!r}, not {audience!r}")
        )
