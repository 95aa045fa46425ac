"""The Doshii Partner API's credential, as doshii-partner-node-sdk makes it."""

from __future__ import annotations

import time
from typing import Any

import jwt


def doshii_jwt(key: str, secret: str, *, at: float | None = None, **claims: Any) -> str:
    """HS256 over ``{clientId: <app key>, timestamp: <epoch seconds>}`` (and ``claims``),
    signed with the app's secret; ``at`` replaces the current time."""
    payload: dict[str, Any] = {
        "clientId": key,
        "timestamp": round(at if at is not None else time.time()),
    }
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")
