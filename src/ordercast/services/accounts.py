"""Accounts and the OAuth2 token grants (``POST /auth-oauth2/oauth/token``).

Passwords are hashed with argon2id (argon2-cffi; cost from settings, its defaults unless
changed; a hash made with other parameters is redone at the next login); hashing and
verifying run in a worker thread so the event loop is never blocked by them. A login for an
unknown username still verifies against a fixed hash, so the answer takes the same time
whether or not the account exists. Rules for who may use which grant are pure
(:mod:`ordercast.domain.accounts`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ordercast.domain.access import AppPrincipal
from ordercast.domain.accounts import (
    Account,
    password_client_allowed,
    token_venues,
    validate_grants,
    validate_new_account,
    validate_password,
)
from ordercast.domain.isotime import iso
from ordercast.errors import NotFound, OAuthError, Unauthorized, ValidationError
from ordercast.ports import Accounts, Clock, Ids, Store
from ordercast.services.common import SYSTEM_IDS
from ordercast.services.jwtokens import REFRESH, JwtSigner


def account_dict(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "tenant_id": account.tenant_id,
        "username": account.username,
        "roles": sorted(account.roles),
        "location_ids": sorted(account.location_ids),
        "disabled": account.disabled,
        "created_at": account.created_at,
    }


class Passwords:
    """argon2id hashing with one set of parameters."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified when the username is unknown: same work as a real check, never a match.
        # Made at the first login attempt, not at start-up (argon2id is slow by design).
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, hash_: str | None, password: str) -> bool:
        if hash_ is None:
            if self._dummy is None:
                self._dummy = await self.hash("ordercast: no such account")
            hash_ = self._dummy
        return await asyncio.to_thread(self._verify, hash_, password)

    def _verify(self, hash_: str, password: str) -> bool:
        try:
            return self.hasher.verify(hash_, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hash_: str) -> bool:
        return self.hasher.check_needs_rehash(hash_)


class AccountService:
    def __init__(
        self,
        store: Store,
        accounts: Accounts,
        clock: Clock,
        signer: JwtSigner,
        *,
        access_ttl: int,
        refresh_ttl: int,
        passwords: Passwords | None = None,
        ids: Ids = SYSTEM_IDS,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock
        self.signer = signer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.passwords = passwords or Passwords()
        self.ids = ids

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    # -- management (admin API and CLI) --------------------------------------------------------

    async def create(
        self,
        *,
        tenant_id: str,
        username: str,
        password: str,
        roles: list[str],
        location_ids: list[str],
    ) -> Account:
        username, role_set, locations = validate_new_account(
            username, password, roles, location_ids
        )
        if await self.store.get_tenant(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        await self._check_locations(tenant_id, locations)
        password_hash = await self.passwords.hash(password)
        account = Account(
            id=self.ids.new_id("usr_"),
            tenant_id=tenant_id,
            username=username,
            password_hash=password_hash,
            roles=role_set,
            created_at=iso(self.clock.now()),
            location_ids=locations,
        )
        await self.accounts.create(account)
        return account

    async def update(
        self,
        account_id: str,
        *,
        password: str | None = None,
        location_ids: list[str] | None = None,
        disabled: bool | None = None,
    ) -> Account:
        """Change a login. Tokens already issued keep their claims until they expire; a
        refresh reads the account as it is (a disabled account gets no new tokens)."""
        account = await self.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
        password_hash = account.password_hash
        if password is not None:
            password_hash = await self.passwords.hash(validate_password(password))
        locations = account.location_ids
        if location_ids is not None:
            locations = frozenset(location_ids)
            validate_grants(account.roles, locations)
            await self._check_locations(account.tenant_id, locations)
        updated = Account(
            id=account.id,
            tenant_id=account.tenant_id,
            username=account.username,
            password_hash=password_hash,
            roles=account.roles,
            created_at=account.created_at,
            location_ids=locations,
            disabled=account.disabled if disabled is None else disabled,
        )
        await self.accounts.update(updated)
        return updated

    async def _check_locations(self, tenant_id: str, locations: frozenset[str]) -> None:
        for lid in sorted(locations):
            loc = await self.store.get_location(lid)
            if loc is None or loc.tenant_id != tenant_id:
                raise ValidationError(
                    f"location {lid} is not a location of tenant {tenant_id}",
                    field="location_ids",
                )

    async def list(self, tenant_id: str) -> list[Account]:
        if await self.store.get_tenant(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return await self.accounts.list(tenant_id)

    # -- OAuth2 grants -------------------------------------------------------------------------

    def _tokens(self, account: Account, client: AppPrincipal, scope: str) -> dict[str, Any]:
        now = self._now()
        access = self.signer.issue(
            user_id=account.id,
            tenant_id=account.tenant_id,
            app_id=client.app_id,
            now=now,
            ttl=self.access_ttl,
            roles=account.roles,
            location_ids=token_venues(account, client.location_ids),
            module=account.module,
            scope=scope,
        )
        refresh = self.signer.issue_refresh(
            account_id=account.id,
            tenant_id=account.tenant_id,
            app_id=client.app_id,
            now=now,
            ttl=self.refresh_ttl,
        )
        return {
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": refresh,
            "expires_in": self.access_ttl,
            "scope": scope,
            "UUID": account.id,
            "tenant": account.tenant_id,
        }

    async def password_grant(
        self, client: AppPrincipal, username: str, password: str, scope: str
    ) -> dict[str, Any]:
        if not username or not password:
            raise OAuthError("invalid_request", "the password grant needs username and password")
        account = await self.accounts.by_username(client.tenant_id, username)
        ok = await self.passwords.verify(account.password_hash if account else None, password)
        if account is None or not ok or account.disabled:
            raise OAuthError("invalid_grant", "bad credentials")
        if not password_client_allowed(account, client.kind):
            raise OAuthError(
                "unauthorized_client",
                f"customers log in through a channel app; this app is '{client.kind}'",
            )
        if self.passwords.needs_rehash(account.password_hash):
            rehashed = await self.passwords.hash(password)
            await self.accounts.set_password_hash(account.id, rehashed)
        return self._tokens(account, client, scope)

    def client_credentials_grant(self, client: AppPrincipal, scope: str) -> dict[str, Any]:
        token = self.signer.issue_app(client, now=self._now(), ttl=self.access_ttl)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.access_ttl,
            "scope": scope,
            "tenant": client.tenant_id,
        }

    async def refresh_grant(
        self, client: AppPrincipal, refresh_token: str, scope: str
    ) -> dict[str, Any]:
        if not refresh_token:
            raise OAuthError("invalid_request", "the refresh_token grant needs refresh_token")
        try:
            claims = self.signer.claims(refresh_token, now=self._now(), typ=REFRESH)
        except Unauthorized as exc:
            raise OAuthError("invalid_grant", exc.detail) from exc
        if claims.get("client_id") != client.app_id or claims.get("tenant") != client.tenant_id:
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        # The account as it is now: a disabled account or changed grants apply at once.
        account = await self.accounts.get(str(claims["sub"]))
        if account is None or account.disabled or account.tenant_id != client.tenant_id:
            raise OAuthError("invalid_grant", "the account no longer exists or is disabled")
        return self._tokens(account, client, scope)
