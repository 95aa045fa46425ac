"""Who is calling, the Doshii way: the Partner API's JWT and the partner socket's ``auth``.

``doshii-partner-node-sdk`` signs every request with ``jsonwebtoken.sign({clientId,
timestamp}, clientSecret)`` (HS256; the library adds ``iat``) and sends it as
``Authorization: Bearer <jwt>``. ordercast's ``clientId`` is the app's key and the client
secret is the app's secret. A token is accepted when its signature verifies with that
app's secret and its ``timestamp`` (epoch seconds) is within :data:`WINDOW_SECONDS` of
the server's clock, either way.

The SDK's socket sends ``?auth=base64(clientId)`` — no secret at all: anyone who knows an
app's key could listen. ordercast accepts that only from apps whose settings set
:data:`CLIENT_ID_SOCKET_SETTING` to true; any other app must put a JWT signed like the
REST one in ``auth``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Final

import jwt

from ordercast.domain.access import AppPrincipal
from ordercast.errors import Unauthorized, ValidationError
from ordercast.ports import App, Clock
from ordercast.protocols.credentials import Bearer, parse_authorization
from ordercast.protocols.doshii import client_id_from_auth, looks_like_jwt
from ordercast.protocols.logins import basic_credential
from ordercast.services.directory import Directory, app_principal

WINDOW_SECONDS: Final = 300
#: App setting: accept the SDK's secret-less socket ``auth=base64(clientId)`` for this app.
CLIENT_ID_SOCKET_SETTING: Final = "doshii_socket_client_id_auth"


@dataclass(frozen=True, slots=True)
class DoshiiCaller:
    app: App
    principal: AppPrincipal


class DoshiiAuth:
    def __init__(self, directory: Directory, clock: Clock) -> None:
        self.directory = directory
        self.clock = clock

    async def from_header(self, header: str | None, address: str | None = None) -> DoshiiCaller:
        """The REST caller; failed logins are limited per (``address``, clientId)."""
        if not header:
            raise Unauthorized(
                "missing Authorization header: send 'Bearer <JWT HS256 over {clientId, "
                "timestamp} signed with the app secret>'"
            )
        try:
            credentials = parse_authorization(header)
        except Unauthorized:
            credentials = None
        if not isinstance(credentials, Bearer):
            raise Unauthorized("use 'Authorization: Bearer <JWT>' (the Doshii SDK's token)")
        return await self.from_jwt(credentials.token, address)

    async def from_jwt(self, token: str, address: str | None = None) -> DoshiiCaller:
        try:
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"malformed JWT: {exc}") from exc
        client_id = claims.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise Unauthorized("the JWT has no clientId")
        # Every JWT the SDK makes differs (its timestamp): the app key is the credential.
        return await self.directory.login(
            address, basic_credential(client_id), lambda: self._verified(token, client_id)
        )

    async def _verified(self, token: str, client_id: str) -> DoshiiCaller:
        app = await self.directory.app_by_key(client_id)
        if app is None:
            raise Unauthorized("unknown clientId or wrong signature")
        try:
            verified: dict[str, Any] = jwt.decode(
                token,
                app.secret,
                algorithms=["HS256"],
                # iat and exp are checked by the timestamp window below, not by PyJWT.
                options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("unknown clientId or wrong signature") from exc
        if not hmac.compare_digest(str(verified.get("clientId")), app.key):
            raise Unauthorized("unknown clientId or wrong signature")
        timestamp = verified.get("timestamp")
        if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
            raise Unauthorized("the JWT has no numeric timestamp (epoch seconds)")
        skew = abs(self.clock.now().timestamp() - float(timestamp))
        if skew > WINDOW_SECONDS:
            raise Unauthorized(
                f"the JWT timestamp is {int(skew)} s away from the server's clock; "
                f"at most {WINDOW_SECONDS} s is accepted"
            )
        return DoshiiCaller(app, app_principal(app))

    async def from_socket_auth(self, auth: str | None, address: str | None = None) -> DoshiiCaller:
        """The socket's ``auth`` query parameter: a JWT (failed logins limited per
        (``address``, clientId)), or (opt-in) ``base64(clientId)``, which has no secret."""
        if not auth:
            raise Unauthorized("missing auth: connect to /app/socket?auth=<JWT>")
        if looks_like_jwt(auth):
            return await self.from_jwt(auth, address)
        try:
            client_id = client_id_from_auth(auth)
        except ValidationError as exc:
            raise Unauthorized(exc.detail) from exc
        app = await self.directory.app_by_key(client_id)
        if app is None or app.settings.get(CLIENT_ID_SOCKET_SETTING) is not True:
            # The same answer for an unknown key and for an app that did not opt in.
            raise Unauthorized(
                "auth=base64(clientId) is not accepted for this app: send a JWT in auth "
                f"(or set the app setting {CLIENT_ID_SOCKET_SETTING})"
            )
        return DoshiiCaller(app, app_principal(app))
