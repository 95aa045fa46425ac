"""Access and refresh tokens as JWTs (RS256, PyJWT), and the JWKS document.

Every access token ordercast issues is a JWT signed with the server's RSA key: the tokens an
app asks for its customers (``POST /v1/users/{id}/tokens``) and the OAuth2 tokens of
``POST /auth-oauth2/oauth/token`` (accounts and apps). Verified without a database round
trip. Claims:

=============  ==============================================================================
``sub``        the user id (an account id for accounts, the app's own id for a customer
               token), or the app id for a ``client_credentials`` token
``UUID``       the same as ``sub`` for users (Ordering Stack's clients read it)
``tenant``     the tenant id
``client_id``  the app (OAuth client) that asked for the token
``typ``        ``access`` (a user), ``app`` (an app: ``client_credentials``) or ``refresh``
``roles``      ``staff`` / ``kds`` / ``customer`` (accounts), ``APP:{kind}`` for apps
``venues``     location ids the token may use (staff and KDS logins; apps: their grants)
``MODULE``     a KDS login's module id (its account id): Ordering Stack's device logins
``iss``        ``ORDERCAST_PUBLIC_URL``, or ``ordercast`` (the same on every node);
               ``iat``, ``exp``, ``jti``
=============  ==============================================================================

Tokens issued before this format (``oct_…``, HMAC, :mod:`ordercast.services.tokens`) are
still accepted until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ordercast.domain.access import AppPrincipal, UserPrincipal
from ordercast.errors import ConfigError, Unauthorized
from ordercast.services.tokens import PREFIX as LEGACY_PREFIX
from ordercast.services.tokens import TokenSigner

ALGORITHM: Final = "RS256"
ACCESS: Final = "access"
APP: Final = "app"
REFRESH: Final = "refresh"
_REQUIRED: Final = ["exp", "iat", "sub", "typ", "tenant"]


def generate_private_key_pem() -> str:
    """A new RSA-2048 private key, PKCS#8 PEM (dev mode keeps one in the database)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


class JwtSigner:
    """Issues and verifies ordercast's JWTs; also verifies legacy ``oct_`` tokens."""

    def __init__(self, private_key_pem: str, issuer: str, legacy: TokenSigner | None = None):
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError("the JWT signing key is not an unencrypted PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ConfigError("the JWT signing key must be an RSA key of at least 2048 bits")
        self._private = key
        self._public = key.public_key()
        self.issuer = issuer
        self.legacy = legacy
        jwk = json.loads(RSAAlgorithm.to_jwk(self._public))
        # RFC 7638 thumbprint as the key id: stable for the same key across restarts.
        self.kid = _thumbprint(jwk)
        self._jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    # -- issuing -------------------------------------------------------------------------------

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private, algorithm=ALGORITHM, headers={"kid": self.kid})

    def issue(
        self,
        *,
        user_id: str,
        tenant_id: str,
        app_id: str,
        now: int,
        ttl: int,
        roles: Iterable[str] = (),
        location_ids: Iterable[str] = (),
        module: str | None = None,
        scope: str = "read",
    ) -> str:
        """A user's access token."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "UUID": user_id,
            "tenant": tenant_id,
            "client_id": app_id,
            "typ": ACCESS,
            "roles": sorted(roles),
            "venues": sorted(location_ids),
            "scope": scope,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        if module:
            claims["MODULE"] = module
        return self._encode(claims)

    def issue_app(self, app: AppPrincipal, *, now: int, ttl: int) -> str:
        """An app's own access token (``client_credentials``)."""
        return self._encode(
            {
                "iss": self.issuer,
                "sub": app.app_id,
                "tenant": app.tenant_id,
                "client_id": app.app_id,
                "typ": APP,
                "roles": [f"APP:{app.kind}"],
                "venues": sorted(app.location_ids),
                "iat": now,
                "exp": now + ttl,
                "jti": uuid.uuid4().hex,
            }
        )

    def issue_refresh(
        self, *, account_id: str, tenant_id: str, app_id: str, now: int, ttl: int
    ) -> str:
        return self._encode(
            {
                "iss": self.issuer,
                "sub": account_id,
                "tenant": tenant_id,
                "client_id": app_id,
                "typ": REFRESH,
                "iat": now,
                "exp": now + ttl,
                "jti": uuid.uuid4().hex,
            }
        )

    # -- verifying -----------------------------------------------------------------------------

    def _decode(self, token: str, now: int) -> dict[str, Any]:
        """Signature, issuer and expiry checked (Unauthorized otherwise)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        # Our clock, not the library's (tests and the runtime share one Clock).
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise Unauthorized("token has expired; get a new one")
        return claims

    def claims(self, token: str, *, now: int, typ: str) -> dict[str, Any]:
        """The verified claims of a token of kind ``typ`` (Unauthorized otherwise)."""
        claims = self._decode(token, now)
        if claims.get("typ") != typ:
            raise Unauthorized(f"this is not an {typ} token")
        return claims

    def verify(self, token: str, *, now: int) -> UserPrincipal:
        """A user's access token (JWT, or a legacy ``oct_`` token until it expires)."""
        if token.startswith(LEGACY_PREFIX) and self.legacy is not None:
            return self.legacy.verify(token, now=now)
        if not looks_like_jwt(token):
            raise Unauthorized("malformed access token")
        return _user(self.claims(token, now=now, typ=ACCESS))

    def verify_principal(self, token: str, *, now: int) -> UserPrincipal | AppPrincipal:
        """A user's access token, or an app's ``client_credentials`` token."""
        if not looks_like_jwt(token):
            return self.verify(token, now=now)  # legacy, or refused as malformed
        claims = self._decode(token, now)
        typ = claims.get("typ")
        if typ == ACCESS:
            return _user(claims)
        if typ == APP:
            kind = next(
                (str(r)[4:] for r in claims.get("roles") or () if str(r).startswith("APP:")), ""
            )
            return AppPrincipal(
                app_id=str(claims["sub"]),
                tenant_id=str(claims["tenant"]),
                kind=kind,
                location_ids=frozenset(str(v) for v in claims.get("venues") or ()),
            )
        raise Unauthorized("this is not an access token")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}


def _user(claims: dict[str, Any]) -> UserPrincipal:
    try:
        return UserPrincipal(
            user_id=str(claims["sub"]),
            tenant_id=str(claims["tenant"]),
            app_id=str(claims.get("client_id") or ""),
            expires_at=int(claims["exp"]),
            roles=frozenset(str(r) for r in claims.get("roles") or ()),
            location_ids=frozenset(str(v) for v in claims.get("venues") or ()),
        )
    except (TypeError, ValueError) as exc:  # pragma: no cover - we signed it
        raise Unauthorized("malformed access token") from exc


def _thumbprint(jwk: dict[str, Any]) -> str:
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
