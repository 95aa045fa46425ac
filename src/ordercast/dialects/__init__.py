"""Dialects: pure translations of canonical events into each platform's wire messages.

A webhook dialect is a module with ``NAME``, ``EVENT_TYPES`` (the wire names it can emit)
and ``render(event, order, target) -> list[WireMessage]``: from one stored event, the
public Order resource after the change (snake_case, as ``GET /v1/orders/{id}`` returns it)
and who the messages are for, the messages that party should receive (often none). Each
dialect keeps its mapping as data tables in its own module. No I/O, no clock: the same
input always gives the same output.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from ordercast.domain.events import ALL_EVENT_TYPES, EventRecord
from ordercast.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Target:
    """The receiving app: its kind (Ordatic routes by it) and whether it subscribed to the
    order (Doshii sends only to subscribed apps)."""

    app_id: str
    app_kind: str
    subscribed: bool = False


@dataclass(frozen=True, slots=True)
class WireMessage:
    """One message to send: the dialect's name for it and the JSON body."""

    type: str
    payload: dict[str, Any]


Render = Callable[[EventRecord, Mapping[str, Any], Target], list[WireMessage]]

WEBHOOK_DIALECTS: Final[tuple[str, ...]] = ("ordercast", "ordatic", "rbi", "doshii", "pusher")


def webhook_dialect(name: str) -> ModuleType:
    """The module of webhook dialect ``name``; ValidationError (field ``dialect``) if unknown."""
    if name not in WEBHOOK_DIALECTS:
        raise ValidationError(
            f"unknown dialect '{name}'; use one of: {', '.join(WEBHOOK_DIALECTS)}",
            field="dialect",
        )
    return importlib.import_module(f"ordercast.dialects.{name}")


_RENDERERS: dict[str, Render] = {}


def renderer(name: str) -> Render:
    """Dialect ``name``'s ``render`` (looked up once per name: the outbox hook asks for
    every endpoint of every change)."""
    render = _RENDERERS.get(name)
    if render is None:
        render = _RENDERERS[name] = webhook_dialect(name).render
    return render


def event_type_names(dialect: str) -> frozenset[str]:
    """What an endpoint's ``event_types`` filter may name: canonical event types and the
    dialect's own wire names."""
    wire: frozenset[str] = webhook_dialect(dialect).EVENT_TYPES
    return ALL_EVENT_TYPES | wire


def validate_event_types(dialect: str, event_types: list[str] | None) -> list[str] | None:
    """Check an endpoint filter. Entries are exact names or a prefix wildcard such as
    ``order.*``, ``delivery.*`` or ``rider-*``. None (or no filter) means everything."""
    if event_types is None:
        return None
    known = event_type_names(dialect)
    out: list[str] = []
    for i, name in enumerate(event_types):
        if not isinstance(name, str) or not name:
            raise ValidationError("event types must be non-empty strings", field="event_types")
        if name.endswith("*"):
            prefix = name[:-1]
            ok = bool(prefix) and any(k.startswith(prefix) for k in known)
        else:
            ok = name in known
        if not ok:
            raise ValidationError(
                f"unknown event type '{name}' for dialect '{dialect}'; use canonical types "
                f"such as 'order.accepted', the dialect's own names, or a wildcard "
                f"such as 'order.*'",
                field=f"event_types.{i}",
            )
        if name not in out:
            out.append(name)
    return out


def matches(event_types: list[str] | None, canonical: str, wire: str) -> bool:
    """Whether a message passes an endpoint's filter (by canonical or by wire name)."""
    if not event_types:
        return True
    for name in event_types:
        if name.endswith("*"):
            prefix = name[:-1]
            if canonical.startswith(prefix) or wire.startswith(prefix):
                return True
        elif name in (canonical, wire):
            return True
    return False


__all__ = [
    "WEBHOOK_DIALECTS",
    "Render",
    "Target",
    "WireMessage",
    "event_type_names",
    "matches",
    "renderer",
    "validate_event_types",
    "webhook_dialect",
]
