"""Signing access tokens with Ed25519 keys published as a JWKS.

Identity uses `TokenSigner` for real; tests of other services use it to mint tokens that the
same `JWKSVerifier` code path accepts.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from studyshare.contracts.tokens import AUDIENCE, ISSUER


class TokenSigner:
    def __init__(self, private_key: Ed25519PrivateKey | None = None, kid: str | None = None):
        self.private_key = private_key or Ed25519PrivateKey.generate()
        self.kid = kid or secrets.token_hex(8)

    @classmethod
    def from_pem(cls, pem: str, kid: str) -> TokenSigner:
        key = load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key must be an Ed25519 private key")
        return cls(key, kid)

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ).decode()

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def sign(self, ttl_s: int = 900, **claims: Any) -> str:
        now = time.time()
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": round(now, 3),  # to the millisecond: see `revocations.SessionRevocations`
            "exp": int(now) + ttl_s,
            "jti": secrets.token_hex(8),
            **claims,
        }
        return jwt.encode(body, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})
