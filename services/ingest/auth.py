"""Who is calling the gRPC API: a bearer token (JWT) checked on every call.

The token must be signed by a key in the configured JWKS file (Ed25519, ECDSA or RSA; never
"none" or a shared secret), name the configured issuer and audience, and carry ``sub``,
``exp`` and ``iat``. Its ``scope`` claim (space-separated, OAuth style) says what it may
do. The creator whose jobs a call touches is the subject, except for a trusted platform
service (scope ``alive.service``), which acts for the creator named in its
``alive_creator`` claim, a claim the issuer lets only such services carry. docs/security.md
describes the scopes and how keys rotate (several keys in the JWKS, picked by ``kid``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt

from alive.jobs import valid_id
from services.ingest.settings import IngestSettings

# Asymmetric algorithms only: a public JWKS must never let a caller pick HMAC or "none".
ALGORITHMS = ["EdDSA", "ES256", "ES384", "RS256", "PS256"]
CREATOR_CLAIM = "alive_creator"


class Scope(StrEnum):
    SUBMIT = "alive.submit"
    READ = "alive.read"
    PUBLISH = "alive.publish"
    CANCEL = "alive.cancel"
    SERVICE = "alive.service"  # a platform service acting for the creator in CREATOR_CLAIM
    REVIEW = "alive.review"  # the review tools: read any creator's job
    REPORT = "alive.report"  # report a published video (anyone signed in)
    ERASE = "alive.erase"  # erase one's own jobs, or everything about oneself
    PRIVACY_ADMIN = "alive.privacy-admin"  # erase any job or any creator's data


CREATOR_SCOPES = (
    Scope.SUBMIT,
    Scope.READ,
    Scope.PUBLISH,
    Scope.CANCEL,
    Scope.REPORT,
    Scope.ERASE,
)


class Unauthenticated(Exception):
    """No token, or one that does not verify; the message says which, never the token."""


@dataclass(frozen=True)
class Caller:
    subject: str
    creator_id: str
    scopes: frozenset[str]

    def may(self, scope: Scope) -> bool:
        return scope.value in self.scopes

    def may_see(self, creator_id: str) -> bool:
        """Whether the caller may see a job of ``creator_id``: its own, or any as a reviewer."""
        return creator_id == self.creator_id or self.may(Scope.REVIEW)


class TokenVerifier:
    """Checks bearer tokens against the issuer's public keys (a JWKS file)."""

    def __init__(self, jwks_path: Path, issuer: str, audience: str, leeway_s: int) -> None:
        try:
            keys = jwt.PyJWKSet.from_dict(json.loads(jwks_path.read_text())).keys
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"JWKS {jwks_path}: {exc}") from exc
        self._keys = {k.key_id: k for k in keys if k.key_id}
        if not self._keys:
            raise ValueError(f"JWKS {jwks_path} has no key with a kid")
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> TokenVerifier:
        if settings.jwks_path is None:
            raise ValueError("set ALIVE_INGEST__JWKS_PATH: the token issuer's public keys")
        return cls(
            settings.jwks_path, settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_s
        )

    def caller(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Caller:
        """The caller a call's ``authorization: Bearer <jwt>`` metadata proves."""
        values = [v for k, v in metadata or () if k == "authorization"]
        if len(values) != 1:
            raise Unauthenticated("send one 'authorization: Bearer <token>' header")
        value = values[0].decode() if isinstance(values[0], bytes) else values[0]
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the authorization header is not 'Bearer <token>'")
        return self._verify(token.strip())

    def _verify(self, token: str) -> Caller:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthenticated("the token's kid names no key of the issuer")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from exc
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = str(claims["sub"])
        creator = str(claims.get(CREATOR_CLAIM, "")) if Scope.SERVICE in scopes else subject
        if not valid_id(creator):
            raise Unauthenticated("the token names no valid creator")
        return Caller(subject, creator, scopes)
