"""Tenants, locations, apps and who is calling (authentication)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ordercast.domain.access import (
    APP_KINDS,
    Admin,
    AppPrincipal,
    Principal,
    UserPrincipal,
    check_location_access,
)
from ordercast.domain.isotime import iso
from ordercast.errors import NotFound, RateLimited, Unauthorized, ValidationError
from ordercast.ports import App, Bus, BusMessage, Clock, Ids, Location, Store, Tenant
from ordercast.protocols.credentials import same_secret
from ordercast.protocols.logins import LoginLimiter
from ordercast.services.common import SYSTEM_IDS
from ordercast.services.jwtokens import JwtSigner, looks_like_jwt
from ordercast.services.tokens import PREFIX as TOKEN_PREFIX

P = TypeVar("P")


def validate_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"unknown timezone '{name}'; use an IANA name such as 'America/New_York'",
            field="timezone",
        ) from exc
    return name


def validate_location_settings(settings: dict[str, Any]) -> dict[str, Any]:
    labels = settings.get("tracker_labels")
    if labels is not None:
        from ordercast.domain.lifecycle import OrderStatus

        valid = {s.value for s in OrderStatus}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValidationError(
                "settings.tracker_labels maps canonical states to display labels (strings)",
                field="settings.tracker_labels",
            )
        unknown = sorted(set(labels) - valid)
        if unknown:
            raise ValidationError(
                f"settings.tracker_labels has unknown states: {', '.join(unknown)}",
                field="settings.tracker_labels",
            )
    legacy = settings.get("legacy_tracker")
    if legacy is not None and not isinstance(legacy, bool):
        raise ValidationError(
            "settings.legacy_tracker must be true or false", field="settings.legacy_tracker"
        )
    return settings


def validate_app_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Known app settings must have the right type (others are kept as given)."""
    if "client_events" in settings and not isinstance(settings["client_events"], bool):
        raise ValidationError(
            "settings.client_events must be true or false", field="settings.client_events"
        )
    return settings


@dataclass(frozen=True, slots=True)
class CreatedApp:
    app: App
    secret: str


# How long an app looked up by key for authentication is kept in this process. A change to
# an app made by this process is seen at once (``Directory.forget_app``); other processes
# sharing the database (other ``ordercast run`` workers, the CLI) see it within this TTL.
APP_CACHE_SECONDS: Final = 5.0
APP_CACHE_MAX: Final = 10_000
#: Longer keys or secrets are refused before any lookup or comparison.
MAX_CREDENTIAL_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class _CachedApp:
    app: App
    principal: AppPrincipal
    secret: bytes
    expires: float


class AppCache:
    """Apps by key, as the store returned them, for ``ttl`` seconds: HTTP Basic and the
    Pusher auth endpoints otherwise cost a database query per request.

    Only apps the store found are kept: an unknown key is looked up every time, nothing
    about a failed attempt is remembered. The caller still compares the secret on every
    request (in constant time) against the app's, so a wrong secret is refused whether or
    not the key is cached.
    """

    def __init__(
        self,
        ttl: float = APP_CACHE_SECONDS,
        max_entries: int = APP_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._by_key: dict[str, _CachedApp] = {}
        self._keys_by_id: dict[str, str] = {}

    def get(self, key: str) -> _CachedApp | None:
        entry = self._by_key.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._by_key[key]
            return None
        return entry

    def get_by_id(self, app_id: str) -> _CachedApp | None:
        key = self._keys_by_id.get(app_id)
        entry = None if key is None else self.get(key)
        return entry if entry is not None and entry.app.id == app_id else None

    def put(self, app: App) -> _CachedApp:
        now = self._clock()
        if len(self._by_key) >= self.max_entries:
            self._by_key = {k: v for k, v in self._by_key.items() if v.expires > now}
            if len(self._by_key) >= self.max_entries:
                self._by_key.clear()
            self._keys_by_id = {v.app.id: k for k, v in self._by_key.items()}
        entry = _CachedApp(app, app_principal(app), app.secret.encode(), now + self.ttl)
        self._by_key[app.key] = entry
        self._keys_by_id[app.id] = app.key
        return entry

    def forget(self, *, key: str | None = None, app_id: str | None = None) -> None:
        if key is not None:
            self._by_key.pop(key, None)
        if app_id is not None:
            self._keys_by_id.pop(app_id, None)
            for k in [k for k, v in self._by_key.items() if v.app.id == app_id]:
                del self._by_key[k]

    def clear(self) -> None:
        self._by_key.clear()
        self._keys_by_id.clear()


def _unauthorized(exc: Exception) -> bool:
    return isinstance(exc, Unauthorized)


class Directory:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Clock,
        signer: JwtSigner,
        admin_token: str,
        ids: Ids = SYSTEM_IDS,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.ids = ids
        self.signer = signer
        self._admin_token = admin_token
        self.apps = AppCache()
        #: Failed-login limits per (client address, credential); Runtime.open configures.
        self.logins = LoginLimiter(max_failures=10, window=60.0)

    # -- authentication --------------------------------------------------------------

    async def login(
        self,
        address: str | None,
        credential: str,
        attempt: Callable[[], Awaitable[P]],
        *,
        record: bool = True,
        failed: Callable[[Exception], bool] = _unauthorized,
    ) -> P:
        """Run ``attempt`` (an authentication) under the failed-login limit of (``address``,
        ``credential``): refused with RateLimited while that pair is blocked; a failure
        (an error ``failed`` accepts: Unauthorized unless told otherwise) is counted when
        ``record``. ``address`` None: no limit (in-process callers)."""
        if address is not None:
            wait = self.logins.retry_after(address, credential, time.monotonic())
            if wait is not None:
                raise RateLimited(
                    "too many failed logins with this credential from this address; "
                    f"retry in {wait} s",
                    retry_after=wait,
                )
        try:
            return await attempt()
        except Exception as exc:
            if address is not None and record and failed(exc):
                self.logins.failed(address, credential, time.monotonic())
            raise

    async def _cached_app(self, key: str) -> _CachedApp | None:
        if not _plausible_key(key):
            return None  # never sent to the database (NUL bytes, surrogates, megabytes)
        entry = self.apps.get(key)
        if entry is None:
            app = await self.store.get_app_by_key(key)
            if app is None:
                return None
            entry = self.apps.put(app)
        return entry

    async def authenticate_basic(self, key: str, secret: str) -> AppPrincipal:
        if len(key) > MAX_CREDENTIAL_LENGTH or len(secret) > MAX_CREDENTIAL_LENGTH:
            raise Unauthorized("unknown app key or wrong secret")
        entry = await self._cached_app(key)
        # Compared on every request, cached or not; a failure is never cached.
        if entry is None or not same_secret(secret, entry.secret):
            raise Unauthorized("unknown app key or wrong secret")
        return entry.principal

    async def _issuing_app(self, app_id: str) -> App | None:
        if not plausible_id(app_id):
            return None
        entry = self.apps.get_by_id(app_id)
        if entry is not None:
            return entry.app
        app = await self.store.get_app(app_id)
        if app is not None:
            self.apps.put(app)
        return app

    async def authenticate_user_token(self, token: str) -> UserPrincipal | AppPrincipal:
        """The principal behind an access token (a user's, or an app's client_credentials
        JWT). A customer token (no venues of its own) carries the grants of the app that
        issued it, looked up now: a location taken from the app is taken from its tokens."""
        principal = self.signer.verify_principal(token, now=int(self.clock.now().timestamp()))
        if not isinstance(principal, UserPrincipal) or principal.location_ids:
            return principal  # apps' tokens and staff/KDS logins name their own venues
        if not principal.app_id:
            return principal  # no issuing app: its own orders at no location
        app = await self._issuing_app(principal.app_id)
        if app is None or app.tenant_id != principal.tenant_id:
            raise Unauthorized("the app that issued this access token no longer exists")
        return replace(principal, location_ids=app.location_ids)

    async def app_by_key(self, key: str) -> App | None:
        """The app with this key (cached for a few seconds, see ``AppCache``); the caller
        checks the secret."""
        entry = await self._cached_app(key)
        return None if entry is None else entry.app

    async def app_by_id(self, app_id: str) -> App | None:
        """The app with this id (cached as ``app_by_key``)."""
        return await self._issuing_app(app_id)

    def forget_app(self, app: App) -> None:
        """Drop ``app`` from this process's auth cache. Whatever changes, rotates or deletes
        an app (its secret, key or granted locations) calls this after the store commit, so
        this process never accepts the old credentials again; other processes within
        ``APP_CACHE_SECONDS``. (Apps are immutable so far: only tests call it.)"""
        self.apps.forget(key=app.key, app_id=app.id)

    async def authenticate_bearer(self, token: str) -> Principal:
        if same_secret(token, self._admin_token):
            return Admin()
        if looks_like_jwt(token) or token.startswith(TOKEN_PREFIX):
            # JWTs: users' access tokens and apps' client_credentials tokens; ``oct_``:
            # user tokens issued before JWTs, accepted until they expire.
            return await self.authenticate_user_token(token)
        raise Unauthorized("unknown bearer token")

    # -- tenants, locations, apps ----------------------------------------------------

    async def create_tenant(self, name: str, tenant_id: str | None = None) -> Tenant:
        tenant = Tenant(
            id=tenant_id or self.ids.new_id("ten_"), name=name, created_at=iso(self.clock.now())
        )
        await self.store.create_tenant(tenant)
        return tenant

    async def require_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return tenant

    async def create_location(
        self, *, tenant_id: str, name: str, timezone: str, settings: dict[str, Any]
    ) -> Location:
        await self.require_tenant(tenant_id)
        now = iso(self.clock.now())
        location = Location(
            id=self.ids.new_id("loc_"),
            tenant_id=tenant_id,
            name=name,
            timezone=validate_timezone(timezone),
            settings=validate_location_settings(dict(settings)),
            created_at=now,
            updated_at=now,
        )
        await self.store.create_location(location)
        return location

    async def get_location(self, principal: Principal, location_id: str) -> Location:
        location = await self.store.get_location(location_id)
        if location is None:
            raise NotFound(f"location {location_id} not found")
        check_location_access(principal, location.id, location.tenant_id)
        return location

    async def update_location(
        self,
        location_id: str,
        *,
        name: str | None,
        timezone: str | None,
        settings: dict[str, Any] | None,
    ) -> Location:
        current = await self.store.get_location(location_id)
        if current is None:
            raise NotFound(f"location {location_id} not found")
        merged = dict(current.settings)
        if settings:
            merged.update(settings)
        updated = Location(
            id=current.id,
            tenant_id=current.tenant_id,
            name=name or current.name,
            timezone=validate_timezone(timezone) if timezone else current.timezone,
            settings=validate_location_settings(merged),
            created_at=current.created_at,
            updated_at=iso(self.clock.now()),
        )
        await self.store.update_location(updated)
        await self.bus.publish(BusMessage("location", {"location": updated.to_dict()}))
        return updated

    async def create_app(
        self,
        *,
        tenant_id: str,
        name: str,
        kind: str,
        location_ids: list[str],
        settings: dict[str, Any] | None = None,
    ) -> CreatedApp:
        await self.require_tenant(tenant_id)
        if kind not in APP_KINDS:
            raise ValidationError(
                f"unknown app kind '{kind}'; use one of: {', '.join(APP_KINDS)}", field="kind"
            )
        await self._granted(tenant_id, location_ids)
        validate_app_settings(dict(settings or {}))
        secret = self.ids.new_secret("ocs_", 24)
        app = App(
            id=self.ids.new_id("app_"),
            tenant_id=tenant_id,
            name=name,
            kind=kind,
            key=self.ids.new_secret("ock_", 12),
            secret=secret,
            settings=dict(settings or {}),
            created_at=iso(self.clock.now()),
            location_ids=frozenset(location_ids),
        )
        await self.store.create_app(app)
        return CreatedApp(app, secret)

    async def _granted(self, tenant_id: str, location_ids: list[str]) -> None:
        for lid in location_ids:
            loc = await self.store.get_location(lid)
            if loc is None or loc.tenant_id != tenant_id:
                raise ValidationError(
                    f"location {lid} is not a location of tenant {tenant_id}", field="location_ids"
                )

    async def update_app(
        self,
        app_id: str,
        *,
        name: str | None = None,
        location_ids: list[str] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> App:
        """Change an app's name, granted locations (replaced) or settings (merged; a ``None``
        value removes the key). Its key, secret and kind never change."""
        current = await self.get_app(app_id)
        if location_ids is not None:
            await self._granted(current.tenant_id, location_ids)
        merged = dict(current.settings)
        for key, value in (settings or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        validate_app_settings(merged)
        updated = App(
            id=current.id,
            tenant_id=current.tenant_id,
            name=name or current.name,
            kind=current.kind,
            key=current.key,
            secret=current.secret,
            settings=merged,
            created_at=current.created_at,
            location_ids=(
                frozenset(location_ids) if location_ids is not None else current.location_ids
            ),
        )
        await self.store.update_app(updated)
        self.forget_app(updated)  # this process takes the new grants at once
        return updated

    async def get_app(self, app_id: str) -> App:
        app = await self.store.get_app(app_id)
        if app is None:
            raise NotFound(f"app {app_id} not found")
        return app

    def issue_user_token(self, principal: AppPrincipal, user_id: str, ttl: int) -> tuple[str, int]:
        if not user_id or len(user_id) > 128:
            raise ValidationError("user_id must be 1 to 128 characters", field="user_id")
        token = self.signer.issue(
            user_id=user_id,
            tenant_id=principal.tenant_id,
            app_id=principal.app_id,
            now=int(self.clock.now().timestamp()),
            ttl=ttl,
        )
        return token, ttl


def _plausible_key(key: str) -> bool:
    return 0 < len(key) <= MAX_CREDENTIAL_LENGTH and key.isascii() and key.isprintable()


def plausible_id(value: str) -> bool:
    """Could ``value`` be an id ordercast made (printable ASCII, at most 128 characters)?
    Anything else is unknown without asking the database (NUL bytes and lone surrogates
    are refused by PostgreSQL's driver)."""
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def app_principal(app: App) -> AppPrincipal:
    return AppPrincipal(
        app_id=app.id, tenant_id=app.tenant_id, kind=app.kind, location_ids=app.location_ids
    )


def app_dict(app: App) -> dict[str, Any]:
    return {
        "id": app.id,
        "tenant_id": app.tenant_id,
        "name": app.name,
        "kind": app.kind,
        "key": app.key,
        "location_ids": sorted(app.location_ids),
        "settings": app.settings,
        "created_at": app.created_at,
    }
