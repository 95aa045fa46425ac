"""The outbox hook's messages, against the dialects themselves: every endpoint gets what its
dialect renders for its target, byte for byte, under its own message id, filtered by its own
event types; endpoints that share a dialect and a target share the rendering (once per
change), and the order is never changed by it."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

from ordercast.delivery.outbox import OutboxHook
from ordercast.dialects import Target, matches, renderer
from ordercast.domain.events import EventRecord
from ordercast.ports import EndpointTarget, OutboxMessage, Tx
from ordercast.protocols.webhooks import encode_body
from ordercast.services.orders import order_resource
from support.orders import sample_order as order

BASE = "http://hub.test"


class FakeOutbox:
    def __init__(self, endpoints: list[EndpointTarget], subscribers: set[str]) -> None:
        self.endpoints = endpoints
        self.subscribers_ = subscribers
        self.added: list[OutboxMessage] = []

    async def targets(self, tx: Tx, tenant_id: str, location_id: str) -> list[EndpointTarget]:
        return self.endpoints

    async def subscribers(self, tx: Tx, order_id: str) -> set[str]:
        return self.subscribers_

    async def add(self, tx: Tx, messages: Sequence[OutboxMessage]) -> None:
        self.added.extend(messages)


class Ids:
    def __init__(self) -> None:
        self.n = itertools.count()

    def new_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self.n):04d}"

    def new_secret(self, prefix: str, nbytes: int = 24) -> str:
        return prefix

    def uuid4(self) -> str:
        return "u"


def event(seq: int, type_: str, **data: Any) -> EventRecord:
    return EventRecord(
        event_id=f"evt_{seq}",
        order_id="ord_1",
        seq=seq,
        type=type_,
        status="ready",
        occurred_at="2026-01-01T00:05:00.000000Z",
        recorded_at="2026-01-01T00:05:00.000000Z",
        actor={"type": "app", "id": "app_pos", "kind": "pos"},
        data=data,
    )


def endpoint(
    eid: str, app: str, kind: str, dialect: str, types: list[str] | None = None
) -> EndpointTarget:
    return EndpointTarget(eid, app, dialect, types, enabled=eid != "ep_off", kind=kind)


async def test_each_endpoint_gets_its_dialects_bytes_once_under_its_own_id() -> None:
    endpoints = [
        endpoint("ep_a", "app_pos", "pos", "ordercast"),
        endpoint("ep_b", "app_pos", "pos", "ordercast"),  # same dialect and target as ep_a
        endpoint("ep_c", "app_pos", "pos", "ordercast", ["order.ready"]),
        endpoint("ep_off", "app_pos", "pos", "ordercast"),  # disabled: rows kept, skipped
        endpoint("ep_d", "app_rider", "rider", "ordatic"),
        endpoint("ep_e", "app_pos", "pos", "ordatic", ["rider-*"]),
        endpoint("ep_f", "app_loyal", "loyalty", "doshii"),  # subscribed
        endpoint("ep_g", "app_other", "loyalty", "doshii"),  # not subscribed: nothing
        endpoint("ep_h", "app_pos", "pos", "rbi"),
    ]
    outbox = FakeOutbox(endpoints, {"app_loyal"})
    hook = OutboxHook(outbox, BASE, clock=lambda: 1000.0, ids=Ids())  # type: ignore[arg-type]
    o = order()
    before = copy.deepcopy(o.to_dict())
    events = [event(6, "order.ready"), event(7, "delivery.picked_up")]
    await hook(None, o, events)  # type: ignore[arg-type]

    # What each endpoint should have got, rendered here independently, in hook order.
    resource = order_resource(o, BASE)
    expected = []
    for ep in endpoints:
        target = Target(ep.app_id, ep.kind, ep.app_id == "app_loyal")
        for ev in events:
            for part, wire in enumerate(renderer(ep.dialect)(ev, resource, target)):
                if matches(ep.event_types, ev.type, wire.type):
                    body = encode_body(wire.payload).decode()
                    expected.append((ep.id, ev.event_id, part, wire.type, body))
    got = [(m.endpoint_id, m.event_id, m.part, m.wire_type, m.body) for m in outbox.added]
    assert got == expected
    assert {m.endpoint_id for m in outbox.added} == {
        "ep_a",
        "ep_b",
        "ep_c",
        "ep_off",
        "ep_d",
        "ep_e",
        "ep_f",
        "ep_h",
    }
    assert [m.event_id for m in outbox.added if m.endpoint_id == "ep_c"] == ["evt_6"]
    ids = [m.id for m in outbox.added]
    assert ids == [f"msg_{i:04d}" for i in range(len(ids))]  # one fresh id per message
    assert {m.status for m in outbox.added if m.endpoint_id == "ep_off"} == {"skipped"}
    assert {m.status for m in outbox.added if m.endpoint_id != "ep_off"} == {"pending"}
    assert o.to_dict() == before  # rendering shared the order's own data and changed none
    assert hook.queued(o, events) is True


async def test_a_payload_only_filtered_out_endpoints_would_get_is_never_encoded() -> None:
    """Bodies are encoded for messages that some endpoint receives, as before the rendering
    was shared: a filtered-out message costs no encoding (and cannot fail it)."""
    outbox = FakeOutbox([endpoint("ep_a", "app_pos", "pos", "ordercast", ["order.ready"])], set())
    hook = OutboxHook(outbox, BASE, clock=lambda: 1000.0, ids=Ids())  # type: ignore[arg-type]
    o = order()
    bad = event(8, "order.note", text=object())  # not encodable as JSON
    await hook(None, o, [event(6, "order.ready"), bad])  # type: ignore[arg-type]
    assert [m.event_id for m in outbox.added] == ["evt_6"]
