"""User accounts that log in with a password (OAuth2 ``password`` grant): the pure rules.

An account belongs to one tenant, has one or more roles and, for staff and KDS logins, the
locations (venues) it is granted:

* ``customer``: orders it owns (``user_id`` = the account id), like a customer token an app
  issues;
* ``staff`` / ``kds``: the open orders and KDS stream (``/kds/{tenant}/{venue}``) of its
  granted venues. A KDS login's token also names it as an Ordering Stack module.

Which OAuth client (an app, by HTTP Basic key:secret) may use which grant:

* ``password``: an app of the account's tenant. Staff and KDS tokens get the venues granted
  to both the account and the app (an app cannot widen a login); a customer logs in only
  through a ``channel`` app (the ordering app).
* ``client_credentials``: any app, for itself (its own kind and grants).
* ``refresh_token``: the app the refresh token was issued to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from ordercast.errors import ValidationError

ROLES: Final[tuple[str, ...]] = ("staff", "kds", "customer")
VENUE_ROLES: Final = frozenset({"staff", "kds"})
GRANT_TYPES: Final[tuple[str, ...]] = ("password", "client_credentials", "refresh_token")
CUSTOMER_CLIENT_KINDS: Final = frozenset({"channel"})
_USERNAME: Final = re.compile(r"[A-Za-z0-9._@+\-]{1,128}")
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    tenant_id: str
    username: str
    password_hash: str
    roles: frozenset[str]
    created_at: str
    location_ids: frozenset[str] = field(default_factory=frozenset)
    disabled: bool = False

    @property
    def module(self) -> str | None:
        """A KDS login is an Ordering Stack *module*; its id is the account id."""
        return self.id if "kds" in self.roles else None


def validate_new_account(
    username: str, password: str, roles: list[str], location_ids: list[str]
) -> tuple[str, frozenset[str], frozenset[str]]:
    """``(username, roles, location_ids)`` checked, or ValidationError."""
    if not _USERNAME.fullmatch(username or ""):
        raise ValidationError(
            "username must be 1 to 128 letters, digits or . _ @ + -", field="username"
        )
    validate_password(password)
    if not roles:
        raise ValidationError(f"roles: give one or more of {', '.join(ROLES)}", field="roles")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValidationError(
            f"unknown roles {', '.join(unknown)}; use {', '.join(ROLES)}", field="roles"
        )
    role_set = frozenset(roles)
    locations = frozenset(location_ids)
    validate_grants(role_set, locations)
    return username, role_set, locations


def validate_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password or "") <= MAX_PASSWORD:
        raise ValidationError(
            f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password"
        )
    return password


def validate_grants(roles: frozenset[str], locations: frozenset[str]) -> None:
    if roles & VENUE_ROLES and not locations:
        raise ValidationError(
            "staff and kds accounts need location_ids (the venues they work at)",
            field="location_ids",
        )
    if locations and not roles & VENUE_ROLES:
        raise ValidationError("location_ids are for staff and kds accounts", field="location_ids")


def password_client_allowed(account: Account, app_kind: str) -> bool:
    """May an app of ``app_kind`` log this account in (``password`` grant)?"""
    if account.roles & VENUE_ROLES:
        return True
    return app_kind in CUSTOMER_CLIENT_KINDS


def token_venues(account: Account, app_location_ids: frozenset[str]) -> frozenset[str]:
    """The venues a token for ``account`` obtained through an app with these grants may use."""
    if not account.roles & VENUE_ROLES:
        return frozenset()
    return account.location_ids & app_location_ids
