"""User access tokens: short-lived, HMAC-signed, verified without a database round trip.

Format: ``oct_<base64url(JSON claims)>.<base64url(HMAC-SHA256)>``. The claims are
``sub`` (user id), ``ten`` (tenant), ``app`` (issuing app), ``iat`` and ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from ordercast.domain.access import UserPrincipal
from ordercast.errors import Unauthorized
from ordercast.protocols.credentials import as_bytes, same_secret

PREFIX = "oct_"
MAX_TOKEN_LENGTH = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def issue(self, *, user_id: str, tenant_id: str, app_id: str, now: int, ttl: int) -> str:
        claims = {"sub": user_id, "ten": tenant_id, "app": app_id, "iat": now, "exp": now + ttl}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{PREFIX}{body}.{sig}"

    def verify(self, token: str, *, now: int) -> UserPrincipal:
        if not token.startswith(PREFIX) or token.count(".") != 1 or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("malformed access token")
        body, sig = token[len(PREFIX) :].split(".")
        expected = _b64(hmac.new(self._key, as_bytes(body), hashlib.sha256).digest())
        if not same_secret(sig, expected):
            raise Unauthorized("access token signature is invalid")
        try:
            claims = json.loads(_unb64(body))
            principal = UserPrincipal(
                user_id=str(claims["sub"]),
                tenant_id=str(claims["ten"]),
                app_id=str(claims["app"]),
                expires_at=int(claims["exp"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthorized("malformed access token") from exc
        if principal.expires_at <= now:
            raise Unauthorized("access token has expired; ask the app for a new one")
        return principal
