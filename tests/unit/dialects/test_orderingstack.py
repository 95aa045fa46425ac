"""The Ordering Stack dialect: destinations, access rules, payload shapes, replay folding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ordercast.dialects import orderingstack as os_
from ordercast.domain import decide as d
from ordercast.domain import events as ev
from ordercast.domain.access import AppPrincipal, UserPrincipal
from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order, evolve, order_total, with_totals
from ordercast.errors import Forbidden

TENANT = "ten_1"
VENUE = "loc_1"
USER = "user-42"
USER_P = UserPrincipal(user_id=USER, tenant_id=TENANT, app_id="app_1", expires_at=2**40)
KDS_P = AppPrincipal(app_id="app_k", tenant_id=TENANT, kind="kds", location_ids=frozenset({VENUE}))
# Logins (accounts): staff and KDS tokens carry roles and their granted venues.
STAFF_P = UserPrincipal(
    user_id="usr_s",
    tenant_id=TENANT,
    app_id="app_1",
    expires_at=2**40,
    roles=frozenset({"staff"}),
    location_ids=frozenset({VENUE}),
)
KDS_LOGIN_P = UserPrincipal(
    user_id="usr_k",
    tenant_id=TENANT,
    app_id="app_1",
    expires_at=2**40,
    roles=frozenset({"kds"}),
    location_ids=frozenset({VENUE}),
)
# A customer login that claims a venue without a staff role gets nothing from it.
CUSTOMER_WITH_VENUE_P = UserPrincipal(
    user_id="usr_c",
    tenant_id=TENANT,
    app_id="app_1",
    expires_at=2**40,
    roles=frozenset({"customer"}),
    location_ids=frozenset({VENUE}),
)


class Stream:
    """Builds an order's event stream the way OrderService does (pure)."""

    def __init__(self, user: str | None = USER, type: str = "pickup") -> None:
        items = with_totals(
            [
                {
                    "uuid": "i1",
                    "pos_id": "burger",
                    "name": "Cheeseburger",
                    "quantity": 2,
                    "unit_price": 899,
                    "options": [{"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}],
                }
            ]
        )
        self.order = Order(
            id="ord_1",
            tenant_id=TENANT,
            location_id=VENUE,
            status="submitted",
            version=0,
            type=type,
            created_at="2026-01-01T10:00:00Z",
            updated_at="2026-01-01T10:00:00Z",
            created_by="app_1",
            user_id=user,
            items=items,
            consumer={"name": "Ada"},
            total=order_total(items, []),
        )
        self.events: list[EventRecord] = []
        self.batches: list[tuple[dict[str, Any], list[EventRecord]]] = []
        self._clock = 0
        self.append(
            [ev.NewEvent(ev.ORDER_CREATED, {"status": "submitted", "order": self.order.to_dict()})]
        )

    def append(self, new: list[ev.NewEvent]) -> list[EventRecord]:
        self._clock += 1
        now = f"2026-01-01T10:{self._clock:02d}:00Z"
        records = []
        for event in new:
            self.order = evolve(self.order, event, now)
            records.append(
                EventRecord(
                    event_id=f"evt_{self.order.version}",
                    order_id=self.order.id,
                    seq=self.order.version,
                    type=event.type,
                    status=self.order.status,
                    occurred_at=event.occurred_at or now,
                    recorded_at=now,
                    actor={"type": "app", "id": "app_1"},
                    data=event.data,
                )
            )
        self.events += records
        self.batches.append((self.order.to_dict(), records))
        return records

    def run(self, cmd: d.Command) -> list[EventRecord]:
        return self.append(d.decide(self.order, cmd).events)


# -- routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "principal", "kind"),
    [
        (f"/order-changes/{USER}/ord_1", USER_P, os_.ORDER),
        (f"/order-changes/{TENANT}/{USER}", USER_P, os_.USER_ORDERS),
        (f"/kds/{TENANT}/{USER}", USER_P, os_.NOTIFICATIONS),
        (f"/notifications/{TENANT}/{USER}", USER_P, os_.NOTIFICATIONS),
        (f"/kds/{TENANT}/{VENUE}", KDS_P, os_.KDS_VENUE),
        (f"/venue/{TENANT}/{VENUE}", KDS_P, os_.VENUE),
        # ordering-core's spellings and silent destinations
        (f"/venues/{TENANT}/{VENUE}", KDS_P, os_.VENUE),
        (f"/steering/{TENANT}/{VENUE}", KDS_P, os_.SILENT),
        (f"/modules/{TENANT}/app_k", KDS_P, os_.SILENT),
        # staff and KDS logins: their granted venue
        (f"/kds/{TENANT}/{VENUE}", STAFF_P, os_.KDS_VENUE),
        (f"/kds/{TENANT}/{VENUE}", KDS_LOGIN_P, os_.KDS_VENUE),
        (f"/venues/{TENANT}/{VENUE}", KDS_LOGIN_P, os_.VENUE),
        (f"/venue/{TENANT}/{VENUE}", STAFF_P, os_.VENUE),
        (f"/steering/{TENANT}/{VENUE}", STAFF_P, os_.SILENT),
        (f"/modules/{TENANT}/usr_k", KDS_LOGIN_P, os_.SILENT),
        (f"/kds/{TENANT}/usr_s", STAFF_P, os_.NOTIFICATIONS),
        (f"/order-changes/{TENANT}/usr_s", STAFF_P, os_.USER_ORDERS),
        # customers: steering of a venue of their tenant (the gateway checks the venue)
        (f"/steering/{TENANT}/{VENUE}", USER_P, os_.SILENT),
        (f"/modules/{TENANT}/{USER}", USER_P, os_.SILENT),
    ],
)
def test_allowed_routes(destination: str, principal: Any, kind: str) -> None:
    r = os_.route(destination, principal)
    assert r.kind == kind
    assert r.destination == destination
    assert r.resumable is (kind == os_.ORDER)
    # Only a customer's venue needs the gateway's storage check.
    assert r.venue_in_tenant is (
        principal is USER_P and kind == os_.SILENT and "steering" in destination
    )


@pytest.mark.parametrize(
    ("destination", "principal"),
    [
        ("/order-changes/someone-else/ord_1", USER_P),
        (f"/order-changes/{TENANT}/someone-else", USER_P),
        (f"/kds/{TENANT}/{VENUE}", USER_P),  # a customer is not staff
        (f"/venue/{TENANT}/{VENUE}", USER_P),
        (f"/kds/ten_other/{USER}", USER_P),
        (f"/kds/{TENANT}/loc_other", KDS_P),  # not granted
        (f"/kds/ten_other/{VENUE}", KDS_P),
        (f"/order-changes/{USER}/ord_1", KDS_P),  # apps do not follow a user's order here
        (f"/notifications/{TENANT}/{USER}", KDS_P),
        ("/topic/everything", USER_P),
        (f"/kds/{TENANT}/*", KDS_P),
        (f"/kds/{TENANT}/{VENUE}/extra", KDS_P),
        (f"/kds/{TENANT}/", KDS_P),
        ("kds/x/y", KDS_P),
        ("/order-changes/" + "a" * 600 + "/b", USER_P),
        (f"/venues/{TENANT}/{VENUE}", USER_P),  # settings: staff and apps only
        (f"/steering/{TENANT}/loc_other", KDS_P),  # not granted
        (f"/steering/ten_other/{VENUE}", USER_P),
        (f"/modules/{TENANT}/someone-else", USER_P),
        (f"/modules/ten_other/{USER}", USER_P),
        (f"/modules/{TENANT}/app_other", KDS_P),
        (f"/kds/{TENANT}/loc_other", STAFF_P),  # staff: granted venues only
        (f"/kds/ten_other/{VENUE}", STAFF_P),
        (f"/steering/{TENANT}/loc_other", STAFF_P),
        (f"/venues/{TENANT}/loc_other", KDS_LOGIN_P),
        (f"/kds/{TENANT}/{VENUE}", CUSTOMER_WITH_VENUE_P),
        (f"/venue/{TENANT}/{VENUE}", CUSTOMER_WITH_VENUE_P),
        ("/order-changes/usr_k/ord_1", STAFF_P),
        (f"/topics/{TENANT}/{VENUE}", STAFF_P),
    ],
)
def test_denied_routes(destination: str, principal: Any) -> None:
    with pytest.raises(Forbidden):
        os_.route(destination, principal)


# -- payloads ---------------------------------------------------------------------------------


def test_created_order_goes_to_order_user_and_kds_destinations() -> None:
    s = Stream()
    order, records = s.batches[0]
    messages = os_.render_order_change(order, records)
    dests = {m.destination for m in messages}
    assert dests == {
        f"/order-changes/{USER}/ord_1",
        f"/order-changes/{TENANT}/{USER}",
        f"/kds/{TENANT}/{VENUE}",
    }
    body = json.loads(messages[0].body)
    assert body["id"] == "ord_1"
    assert body["tenant"] == TENANT
    assert body["status"] == "COMPLETED"  # Ordering Stack: "completed" = submitted by the guest
    assert body["completed"] is True and body["closed"] is False
    assert body["buckets"][0]["venue"] == VENUE
    line = body["buckets"][0]["lines"][0]
    assert line["quantity"] == 2 and line["price"] == "8.99" and line["total"] == "20.98"
    assert line["status"] == "NEW"
    assert body["total"] == "20.98"
    assert body["users"][0]["userId"] == USER
    assert body["extra"]["x-ordercast-status"] == "submitted"
    assert dict(messages[0].headers) == {
        "seq": "1",
        "order-id": "ord_1",
        "event-type": "order.created",
    }
    assert len({m.message_id for m in messages}) == len(messages)


@pytest.mark.parametrize(
    ("canonical", "status", "line"),
    [
        ("accepted", "VERIFIED", "CONFIRMED"),
        ("preparing", "VERIFIED", "PROCESSING"),
        ("ready", "DELIVER", "PROCESSED"),
        ("handed_off", "DELIVERED", "PROCESSED"),
        ("completed", "CLOSED", "PROCESSED"),
        ("cancelled", "CANCELLED", "VOID"),
    ],
)
def test_status_mapping(canonical: str, status: str, line: str) -> None:
    s = Stream()
    records = s.run(d.Transition(to=canonical, reason="r" if canonical == "cancelled" else None))
    body = json.loads(os_.render_order_change(s.order.to_dict(), records)[0].body)
    assert body["status"] == status
    assert body["buckets"][0]["lines"][0]["status"] == line
    assert body["closed"] is (canonical in ("completed", "cancelled"))


def test_delivery_order_handed_off_is_picked() -> None:
    s = Stream(type="delivery")
    records = s.run(d.Transition(to="handed_off"))
    body = json.loads(os_.render_order_change(s.order.to_dict(), records)[0].body)
    assert body["status"] == "PICKED"
    assert body["orderType"] == "DELIVERY"


def test_kds_sees_appearance_changes_and_close_but_nothing_after() -> None:
    s = Stream()
    kds = f"/kds/{TENANT}/{VENUE}"

    def kds_messages(records: list[EventRecord]) -> list[os_.StompMessage]:
        return [
            m for m in os_.render_order_change(s.order.to_dict(), records) if m.destination == kds
        ]

    assert len(kds_messages(s.batches[0][1])) == 1  # appears
    assert len(kds_messages(s.run(d.Transition(to="preparing")))) == 1  # changes
    assert len(kds_messages(s.run(d.AddNote(text="on the grill")))) == 1
    closing = kds_messages(s.run(d.Transition(to="completed", how="picked_up")))
    assert len(closing) == 1 and json.loads(closing[0].body)["closed"] is True
    assert kds_messages(s.run(d.AddNote(text="thanks!"))) == []  # closed: gone from the KDS


def test_draft_orders_are_not_on_the_kds() -> None:
    order = Stream().order.to_dict()
    order["status"] = "draft"
    record = EventRecord("e", "ord_1", 1, "order.created", "draft", "t", "t", {}, {})
    messages = os_.render_order_change(order, [record])
    assert f"/kds/{TENANT}/{VENUE}" not in {m.destination for m in messages}


def test_error_becomes_order_event_error_with_codes() -> None:
    s = Stream()
    records = s.run(
        d.RecordError(errors=[{"code": "cannotAbandon", "message": "Order cannot be abandoned"}])
    )
    messages = os_.render_order_change(s.order.to_dict(), records)
    notes = [
        m
        for m in messages
        if m.destination.startswith(("/notifications/", f"/kds/{TENANT}/{USER}"))
    ]
    assert {m.destination for m in notes} == {
        f"/kds/{TENANT}/{USER}",
        f"/notifications/{TENANT}/{USER}",
    }
    body = json.loads(notes[0].body)
    assert body == {
        "type": "OrderEventError",
        "users": [USER],
        "orderId": "ord_1",
        "correlationId": records[0].event_id,
        "event": {"correlationId": records[0].event_id, "user": USER, "orderId": "ord_1"},
        "message": "Order cannot be abandoned",
        "codes": [{"code": "cannotAbandon", "message": "Order cannot be abandoned", "args": None}],
    }


def test_rejection_is_an_order_event_error_and_note_an_order_message() -> None:
    s = Stream()
    note = s.run(d.AddNote(text="Dave is making your sandwich"))
    body = json.loads(
        next(
            m
            for m in os_.render_order_change(s.order.to_dict(), note)
            if "/notifications/" in m.destination
        ).body
    )
    assert body["type"] == "OrderMessage" and body["message"] == "Dave is making your sandwich"
    rejected = s.run(d.Transition(to="rejected", reason="out of buns"))
    body = json.loads(
        next(
            m
            for m in os_.render_order_change(s.order.to_dict(), rejected)
            if "/notifications/" in m.destination
        ).body
    )
    assert body["type"] == "OrderEventError"
    assert body["codes"][0]["message"] == "out of buns"


def test_orders_without_a_user_only_reach_the_kds() -> None:
    s = Stream(user=None)
    messages = os_.render_order_change(*s.batches[0])
    assert [m.destination for m in messages] == [f"/kds/{TENANT}/{VENUE}"]


def test_wanted_skips_rendering() -> None:
    s = Stream()
    assert os_.render_order_change(*s.batches[0], wanted=lambda _d: False) == []


def test_location_change() -> None:
    [m, alias] = os_.render_location_change(
        {
            "id": VENUE,
            "tenant_id": TENANT,
            "name": "L",
            "timezone": "UTC",
            "settings": {"legacy_tracker": True},
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )
    assert m.destination == f"/venue/{TENANT}/{VENUE}"
    assert alias.destination == f"/venues/{TENANT}/{VENUE}"  # ordering-core's spelling
    assert (alias.body, alias.message_id, alias.headers) == (m.body, m.message_id, m.headers)
    body = json.loads(m.body)
    assert body["type"] == "VenueSettingsChanged"
    assert body["settings"] == {"legacy_tracker": True}


# -- replay -----------------------------------------------------------------------------------


def test_replay_equals_live_messages() -> None:
    s = Stream()
    s.run(
        d.Confirm(
            confirmation=2, reason=None, adjustment={"time": 5}, available_eta="x", required_at=None
        )
    )
    s.run(d.Transition(to="preparing"))
    s.run(d.Transition(to="ready"))
    destination = f"/order-changes/{USER}/ord_1"
    live = [
        m
        for order, records in s.batches
        for m in os_.render_order_change(order, records)
        if m.destination == destination
    ]
    assert any(len(records) > 1 for _, records in s.batches)  # a multi-event commit is covered
    replayed = os_.replay_order_messages(destination, s.events, 0)
    assert replayed == live
    assert [m.seq for m in replayed] == list(range(1, s.order.version + 1))
    assert [m.seq for m in os_.replay_order_messages(destination, s.events, 3)] == list(
        range(4, s.order.version + 1)
    )
    assert os_.replay_order_messages(destination, s.events, s.order.version) == []


def test_snapshots_need_the_creation_event() -> None:
    s = Stream()
    s.run(d.Transition(to="accepted"))
    with pytest.raises(ValueError):
        os_.snapshots(s.events[1:])
