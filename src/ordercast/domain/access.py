"""Who may see what: principals and the one rule per question.

Every transport asks these functions and nothing else (REST, the Pusher auth endpoints and
gateway — live fan-out, last-state cache and catch-up —, the STOMP gateway, webhooks):

* :func:`order_access` / :func:`check_order_access` — may this principal see this order?
* :func:`location_access` / :func:`check_location_access` — this location?
* :func:`tenant_access` — this tenant?
* :func:`app_access` / :func:`check_app_access` — act for this app (its webhook endpoints)?

The rules:

* The admin sees everything.
* An app sees its own tenant's orders at the locations it is granted.
* A user (an access token) sees their own orders (``order.user_id``) in the token's tenant,
  and only at the locations the app that issued the token is granted: a token carries its
  issuing app's grants (looked up when the token is presented, so a grant removed from the
  app is removed from its tokens too). An app cannot reach beyond its grants by minting
  tokens.

Refusals: another tenant's object reads as *not found* (404) so that existence never leaks
across tenants; inside the tenant it is *forbidden* (403).
"""

from __future__ import annotations

import enum
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
    # use. A token an app issues for its customers carries no venues: it gets the issuing
    # app's granted locations when it is presented (``Directory.authenticate_user_token``).
    roles: frozenset[str] = frozenset()
    location_ids: frozenset[str] = frozenset()

    @property
    def venue_staff(self) -> bool:
        """A staff or KDS login: may follow its granted venues' order streams."""
        return bool(self.location_ids) and not self.roles.isdisjoint(("staff", "kds"))


Principal = Admin | AppPrincipal | UserPrincipal


class Access(enum.Enum):
    ALLOWED = "allowed"
    NOT_FOUND = "not_found"  # another tenant's: existence does not leak
    FORBIDDEN = "forbidden"  # inside the tenant, not this principal's


def tenant_access(principal: Principal, tenant_id: str) -> Access:
    """May ``principal`` act inside tenant ``tenant_id`` at all?"""
    if isinstance(principal, Admin) or principal.tenant_id == tenant_id:
        return Access.ALLOWED
    return Access.NOT_FOUND


def location_access(principal: Principal, location_id: str, tenant_id: str) -> Access:
    """May ``principal`` see location ``location_id`` (of tenant ``tenant_id``) and act on
    its orders? Apps and users: only granted locations (a user: its issuing app's)."""
    outer = tenant_access(principal, tenant_id)
    if outer is not Access.ALLOWED or isinstance(principal, Admin):
        return outer
    return Access.ALLOWED if location_id in principal.location_ids else Access.FORBIDDEN


def order_access(
    principal: Principal, tenant_id: str, location_id: str, user_id: str | None
) -> Access:
    """May ``principal`` see the order of ``tenant_id`` at ``location_id`` owned by
    ``user_id``?"""
    where = location_access(principal, location_id, tenant_id)
    if where is not Access.ALLOWED or not isinstance(principal, UserPrincipal):
        return where
    if user_id is not None and user_id == principal.user_id:
        return Access.ALLOWED
    return Access.FORBIDDEN


def app_access(principal: Principal, app_id: str, tenant_id: str) -> Access:
    """May ``principal`` act for app ``app_id`` (of ``tenant_id``): the admin, or that app."""
    outer = tenant_access(principal, tenant_id)
    if outer is not Access.ALLOWED or isinstance(principal, Admin):
        return outer
    if isinstance(principal, AppPrincipal) and principal.app_id == app_id:
        return Access.ALLOWED
    return Access.FORBIDDEN


def may_see_order(
    principal: Principal, tenant_id: str, location_id: str, user_id: str | None
) -> bool:
    return order_access(principal, tenant_id, location_id, user_id) is Access.ALLOWED


def _raise(access: Access, what: str, forbidden: str) -> None:
    if access is Access.NOT_FOUND:
        raise NotFound(f"{what} not found")
    if access is Access.FORBIDDEN:
        raise Forbidden(forbidden)


def check_order_access(
    principal: Principal, order_id: str, tenant_id: str, location_id: str, user_id: str | None
) -> None:
    """Raise NotFound (another tenant) or Forbidden unless ``principal`` may see this order."""
    access = order_access(principal, tenant_id, location_id, user_id)
    if access is not Access.ALLOWED:
        if not isinstance(principal, UserPrincipal):
            why = f"order {order_id} is at a location this app is not granted"
        elif location_id not in principal.location_ids:
            why = f"order {order_id} is at a location the app that issued this token is not granted"
        else:
            why = f"order {order_id} is not an order of this customer"
        _raise(access, f"order {order_id}", why)


def check_location_access(principal: Principal, location_id: str, tenant_id: str) -> None:
    _raise(
        location_access(principal, location_id, tenant_id),
        f"location {location_id}",
        f"location {location_id} is not granted to this app",
    )


def check_app_access(principal: Principal, app_id: str, tenant_id: str) -> None:
    _raise(
        app_access(principal, app_id, tenant_id),
        f"app {app_id}",
        "an app manages only its own webhook endpoints and settings",
    )


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
