"""The Doshii Partner API's tables and wire details, spelled out by hand (pure)."""

from __future__ import annotations

import pytest

from ordercast.dialects import doshii
from ordercast.errors import ProtocolError, ValidationError
from ordercast.protocols import doshii as wire


def test_inbound_status_table() -> None:
    assert doshii.INBOUND == {
        "pending": ("submitted", None),
        "accepted": ("accepted", None),
        "rejected": ("rejected", None),
        "complete": ("completed", None),
        "cancelled": ("cancelled", "platform"),
        "venue_cancelled": ("cancelled", "venue"),
    }
    # Every Doshii status a partner can send maps back to itself when read.
    for theirs, (ours, by) in doshii.INBOUND.items():
        order = {"status": ours, "cancellation": {"by": by} if by else None}
        assert doshii.doshii_status(order) == theirs
    with pytest.raises(ValidationError):
        doshii.status_move("eaten")


def test_status_filter() -> None:
    assert doshii.status_filter("pending") == {"draft", "priced", "submitted"}
    assert doshii.status_filter("complete,rejected") == {"completed", "rejected"}
    assert doshii.status_filter("cancelled") == {"cancelled", "failed"}
    with pytest.raises(ValidationError):
        doshii.status_filter("pending,eaten")


def test_version_token_is_opaque_and_per_order() -> None:
    a1 = doshii.version_token("ord_a", 1)
    assert len(a1) == 11 and a1 == doshii.version_token("ord_a", 1)
    assert a1 != doshii.version_token("ord_a", 2) != doshii.version_token("ord_b", 2)
    assert a1 != "1"


def test_create_spec_from_the_sdk_body() -> None:
    spec = doshii.create_spec(
        {
            "order": {
                "type": "dinein",
                "externalOrderRef": "X",
                "items": [
                    {
                        "posId": 7,
                        "name": "Pie",
                        "quantity": "2",
                        "unitPrice": "650",
                        "rewardRef": "ignored",
                        "options": [
                            {"name": "Sauce", "variants": [{"name": "Tomato", "price": "50"}]}
                        ],
                        "surcounts": [
                            {"name": "Off", "type": "percentage", "amount": "-10", "value": -65}
                        ],
                    }
                ],
                "surcounts": [],
                "taxes": [],
                "revenueCentre": "bar",
            },
            "consumer": {"name": "A", "address": {"line1": "1 St", "postalCode": "2000"}},
            "transactions": [],
        },
        "loc_1",
    )
    assert spec == {
        "location_id": "loc_1",
        "type": "dine_in",
        "status": "submitted",
        "items": [
            {
                "name": "Pie",
                "quantity": 2,
                "unit_price": 650,
                "pos_id": "7",
                "options": [{"name": "Sauce", "variants": [{"name": "Tomato", "price": 50}]}],
                "surcounts": [{"name": "Off", "type": "percentage", "amount": -10.0, "value": -65}],
            }
        ],
        "surcounts": [],
        "external_order_ref": "X",
        "consumer": {"name": "A", "address": {"line1": "1 St", "postal_code": "2000"}},
    }
    for bad in ("1.50", "", None, True, "ten"):
        with pytest.raises(ValidationError):
            doshii.cents(bad, "unitPrice")


def test_socket_frames() -> None:
    assert wire.parse_client_text('{"doshii":{"ping":17,"version":"1.2.3"}}') == wire.Ping(17)
    assert wire.encode_pong(wire.Ping(17)) == b'{"doshii":{"pong":17}}'
    assert (
        wire.encode_emit("order_updated", {"id": "o"}) == b'{"emit":["order_updated",{"id":"o"}]}'
    )
    for bad in (
        "ping",
        "[]",
        '{"doshii":{}}',
        '{"event":"pusher:ping"}',
        '{"doshii":{"ping":true}}',
    ):
        with pytest.raises(ProtocolError):
            wire.parse_client_text(bad)


def test_socket_auth_and_webhook_authorization() -> None:
    assert wire.client_id_from_auth("b2NrX2FiYw==") == "ock_abc"
    assert wire.client_id_from_auth("b2NrX2FiYw") == "ock_abc"  # padding optional
    with pytest.raises(ValidationError):
        wire.client_id_from_auth("%%%")
    assert wire.looks_like_jwt("a.b.c") and not wire.looks_like_jwt("b2NrX2FiYw==")
    assert wire.webhook_authorization("k", "t") == "Basic azp0"
    assert wire.webhook_authorization(None, "t") == "Bearer t"
    assert wire.webhook_authorization(None, None) is None
