"""The platform's signing key: Ed25519 (EdDSA), kept in the store so tokens survive restarts.

Tokens are asymmetric so that anything holding only the public half (`/.well-known/jwks.json`)
can verify them, and nothing but the platform can mint them. Verification pins the algorithm,
so a token that says `alg: none` (or HS256 with the public key as secret) is simply invalid.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import tracengent_api as api
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from ._store import Store

ISSUER = "tracengent-local"
_SETTING = "signing_key_pem"


class SigningKeys:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public: Ed25519PublicKey = private_key.public_key()
        raw = self._public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_store(cls, store: Store) -> SigningKeys:
        """The store's key, created on first use (atomically: two processes agree on one)."""
        fresh = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem = store.set_setting_if_absent(_SETTING, fresh.decode())
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):  # pragma: no cover - only we write this setting
            raise ValueError("the stored signing key is not an Ed25519 key")
        return cls(key)

    def jwks(self) -> api.Jwks:
        jwk = json.loads(OKPAlgorithm.to_jwk(self._public))
        jwk.update(kid=self.kid, alg="EdDSA", use="sig")
        return api.Jwks(keys=[jwk])

    def mint(self, claims: Mapping[str, Any], ttl_s: float, now: float | None = None) -> str:
        issued = time.time() if now is None else now
        payload = {"iss": ISSUER, "iat": int(issued), "exp": int(issued + ttl_s), **claims}
        return jwt.encode(payload, self._private, algorithm="EdDSA", headers={"kid": self.kid})

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this platform signed and that has not expired; raises otherwise."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._public,
            algorithms=["EdDSA"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub"]},
        )
        return claims
