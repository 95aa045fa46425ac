"""The access rules (domain/access.py), spelled out as a table."""

from __future__ import annotations

import pytest

from ordercast.domain.access import (
    Access,
    Admin,
    AppPrincipal,
    Principal,
    UserPrincipal,
    app_access,
    check_order_access,
    location_access,
    order_access,
)
from ordercast.errors import Forbidden, NotFound

APP = AppPrincipal("app_a", "t1", "channel", frozenset({"l1"}))
CAROL = UserPrincipal("carol", "t1", "app_a", 2**40, location_ids=frozenset({"l1"}))
ALLOWED, NOT_FOUND, FORBIDDEN = Access.ALLOWED, Access.NOT_FOUND, Access.FORBIDDEN

# principal, order (tenant, location, owner) -> access
ORDER_CASES: list[tuple[Principal, tuple[str, str, str | None], Access]] = [
    (Admin(), ("t2", "l9", None), ALLOWED),
    (APP, ("t1", "l1", None), ALLOWED),
    (APP, ("t1", "l1", "carol"), ALLOWED),
    (APP, ("t1", "l2", None), FORBIDDEN),  # same tenant, location not granted
    (APP, ("t2", "l1", None), NOT_FOUND),  # another tenant (even with a same-named location)
    (CAROL, ("t1", "l1", "carol"), ALLOWED),
    (CAROL, ("t1", "l1", "dave"), FORBIDDEN),
    (CAROL, ("t1", "l1", None), FORBIDDEN),
    (CAROL, ("t1", "l2", "carol"), FORBIDDEN),  # her order, but not at her app's locations
    (CAROL, ("t2", "l1", "carol"), NOT_FOUND),
    (UserPrincipal("carol", "t1", "app_b", 2**40), ("t1", "l1", "carol"), FORBIDDEN),  # no grants
]


@pytest.mark.parametrize(("principal", "order", "expected"), ORDER_CASES)
def test_order_access(
    principal: Principal, order: tuple[str, str, str | None], expected: Access
) -> None:
    assert order_access(principal, *order) is expected
    if expected is ALLOWED:
        check_order_access(principal, "ord_1", *order)
    else:
        error = NotFound if expected is NOT_FOUND else Forbidden
        with pytest.raises(error):
            check_order_access(principal, "ord_1", *order)


def test_location_and_app_access() -> None:
    assert location_access(APP, "l1", "t1") is ALLOWED
    assert location_access(APP, "l2", "t1") is FORBIDDEN
    assert location_access(APP, "l1", "t2") is NOT_FOUND
    assert location_access(CAROL, "l1", "t1") is ALLOWED
    assert location_access(Admin(), "l5", "t5") is ALLOWED
    assert app_access(APP, "app_a", "t1") is ALLOWED
    assert app_access(APP, "app_b", "t1") is FORBIDDEN
    assert app_access(APP, "app_c", "t2") is NOT_FOUND
    assert app_access(CAROL, "app_a", "t1") is FORBIDDEN
    assert app_access(Admin(), "app_c", "t2") is ALLOWED
