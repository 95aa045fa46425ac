"""Who may do what: principals and the pure access rules.

An app acts only inside its tenant and on the locations it is granted; a user only on
their own orders. Anything else reads as *not found* (404) so that existence never leaks
across tenants; a principal of the wrong kind for an action is *forbidden* (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ordercast.errors import Forbidden, NotFound

APP_KINDS: Final[tuple[str, ...]] = ("channel", "pos", "rider", "loyalty", "kds")


@dataclass(frozen=True, slots=True)
class Admin:
    pass


@dataclass(frozen=True, slots=True)
class AppPrincipal:
    app_id: str
    tenant_id: str
    kind: str
    location_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    user_id: str
    tenant_id: str
    app_id: str
    expires_at: int
    # Accounts (``domain/accounts.py``): "staff" / "kds" roles and the venues the token may
    # use. Tokens an app issues for its customers carry neither.
    roles: frozenset[str] = frozenset()
    location_ids: frozenset[str] = frozenset()

    @property
    def venue_staff(self) -> bool:
        """A staff or KDS login: may follow its granted venues' order streams."""
        return bool(self.location_ids) and not self.roles.isdisjoint(("staff", "kds"))


Principal = Admin | AppPrincipal | UserPrincipal


def check_order_access(
    principal: Principal, order_id: str, tenant_id: str, location_id: str, user_id: str | None
) -> None:
    """Raise NotFound unless ``principal`` may see this order."""
    if isinstance(principal, Admin):
        return
    if isinstance(principal, AppPrincipal):
        if principal.tenant_id == tenant_id and location_id in principal.location_ids:
            return
    elif principal.tenant_id == tenant_id and user_id is not None and user_id == principal.user_id:
        return
    raise NotFound(f"order {order_id} not found")


def check_location_access(principal: Principal, location_id: str, tenant_id: str) -> None:
    if isinstance(principal, Admin):
        return
    if isinstance(principal, AppPrincipal) and (
        principal.tenant_id == tenant_id and location_id in principal.location_ids
    ):
        return
    raise NotFound(f"location {location_id} not found")


def can_follow_venue(principal: Principal, tenant_id: str, location_id: str) -> bool:
    """Whether ``principal`` may read a venue's open orders and its KDS stream: an app
    granted the venue, or a staff/KDS login granted it."""
    if isinstance(principal, Admin):
        return True
    if principal.tenant_id != tenant_id or location_id not in principal.location_ids:
        return False
    return isinstance(principal, AppPrincipal) or principal.venue_staff


def require_app(principal: Principal, *kinds: str) -> AppPrincipal:
    """The app behind ``principal``; Forbidden for users, admins, or another app kind."""
    if not isinstance(principal, AppPrincipal):
        raise Forbidden("this action is for apps (HTTP Basic key:secret)")
    if kinds and principal.kind not in kinds:
        raise Forbidden(
            f"this action is for apps of kind {' or '.join(kinds)}; this app is '{principal.kind}'"
        )
    return principal


def require_admin(principal: Principal) -> Admin:
    if not isinstance(principal, Admin):
        raise Forbidden("this action needs the admin token")
    return principal
