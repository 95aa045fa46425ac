"""Doshii-style webhook registrations (``/partner/v3/webhooks``) on the ordinary outbox.

A Doshii partner registers one webhook per event (optionally per location) with
``{event, webhookUrl, authenticationKey?, authenticationToken?}``. Each registration is an
ordinary webhook endpoint of the app in the ``doshii`` dialect, filtered to that one event
(and location): the same outbox, retries, attempts log, replay, SSRF guard and Standard
Webhooks signature as every other endpoint, plus the ``Authorization`` header Doshii sends
(``protocols/doshii.webhook_authorization``). The endpoints are visible, with their
attempts, under ``/v1/apps/{id}/endpoints`` too.
"""

from __future__ import annotations

from typing import Any, Final

from ordercast.dialects import doshii
from ordercast.domain.access import AppPrincipal
from ordercast.errors import Conflict, NotFound, ValidationError
from ordercast.services.webhooks import WebhookService

#: The Doshii events ordercast emits (the SDK's DoshiiEvents has more: bookings, tables, …).
EVENTS: Final = (doshii.ORDER_CREATED_EVENT, doshii.ORDER_UPDATED_EVENT)
DESCRIPTION: Final = "doshii:"  # description prefix of endpoints made here


def _check_event(event: str) -> str:
    if event not in EVENTS:
        raise ValidationError(
            f"unsupported event '{event}'; ordercast sends: {', '.join(EVENTS)}", field="event"
        )
    return event


def _check_auth(key: str | None, token: str | None) -> None:
    if key and not token:
        raise ValidationError(
            "authenticationKey needs authenticationToken (Basic key:token); "
            "or send authenticationToken alone (Bearer token)",
            field="authenticationKey",
        )
    if key is not None and (len(key) > 512 or ":" in key):
        raise ValidationError(
            "authenticationKey must be at most 512 characters, without ':'",
            field="authenticationKey",
        )
    if token is not None and len(token) > 2048:
        raise ValidationError(
            "authenticationToken must be at most 2048 characters", field="authenticationToken"
        )


class DoshiiWebhooks:
    def __init__(self, webhooks: WebhookService, base_url: str) -> None:
        self.webhooks = webhooks
        self.base_url = base_url

    def view(self, ep: dict[str, Any]) -> dict[str, Any]:
        event = (ep["event_types"] or [""])[0]
        out: dict[str, Any] = {
            "event": event,
            "webhookUrl": ep["url"],
            "authenticationEnabled": bool(ep.get("auth_key") or ep.get("auth_token")),
            "createdAt": ep["created_at"],
            "updatedAt": ep["updated_at"],
            "uri": f"{self.base_url}/partner/v3/webhooks/{event}",
            "enabled": ep["enabled"],
            "endpointId": ep["id"],
        }
        if ep.get("location_id"):
            out["locationId"] = ep["location_id"]
        return out

    async def _mine(self, app: AppPrincipal) -> list[dict[str, Any]]:
        return [
            ep
            for ep in await self.webhooks.outbox.list_endpoints(app.app_id)
            if ep["dialect"] == doshii.NAME and (ep["description"] or "").startswith(DESCRIPTION)
        ]

    async def _find(
        self, app: AppPrincipal, event: str, location_id: str | None, *, any_location: bool
    ) -> list[dict[str, Any]]:
        return [
            ep
            for ep in await self._mine(app)
            if ep["event_types"] == [event]
            and (any_location or ep.get("location_id") == location_id)
        ]

    async def list(self, app: AppPrincipal, location_id: str | None) -> list[dict[str, Any]]:
        found = await self._mine(app)
        if location_id is not None:
            found = [ep for ep in found if ep.get("location_id") in (None, location_id)]
        return [self.view(ep) for ep in found]

    async def get(self, app: AppPrincipal, event: str) -> dict[str, Any]:
        found = await self._find(app, _check_event(event), None, any_location=True)
        if not found:
            raise NotFound(f"no webhook registered for '{event}'")
        return self.view(found[0])

    async def register(
        self,
        app: AppPrincipal,
        *,
        event: str,
        url: str,
        key: str | None,
        token: str | None,
        location_id: str | None,
    ) -> dict[str, Any]:
        _check_event(event)
        _check_auth(key, token)
        self.webhooks.validate_url(url)
        if location_id is not None and location_id not in app.location_ids:
            raise NotFound(f"location {location_id} not found")
        if await self._find(app, event, location_id, any_location=False):
            raise Conflict(
                f"a webhook for '{event}' is already registered; PUT /webhooks/{event} changes it"
            )
        view, _secret = await self.webhooks.create_endpoint(
            app,
            app.app_id,
            url=url,
            dialect=doshii.NAME,
            event_types=[event],
            description=f"{DESCRIPTION}{event}",
            doshii={"auth_key": key, "auth_token": token, "location_id": location_id},
        )
        ep = await self.webhooks.outbox.get_endpoint(view["id"])
        assert ep is not None
        return self.view(ep)

    async def update(
        self, app: AppPrincipal, event: str, *, url: str | None, key: str | None, token: str | None
    ) -> dict[str, Any]:
        found = await self._find(app, _check_event(event), None, any_location=True)
        if not found:
            raise NotFound(f"no webhook registered for '{event}'")
        _check_auth(key, token)
        if url is not None:
            self.webhooks.validate_url(url)
        out: dict[str, Any] = {}
        for ep in found:
            if url is not None:
                await self.webhooks.update_endpoint(app, app.app_id, ep["id"], {"url": url})
            await self.webhooks.outbox.update_endpoint(
                ep["id"], {"auth_key": key, "auth_token": token}
            )
            fresh = await self.webhooks.outbox.get_endpoint(ep["id"])
            assert fresh is not None
            out = self.view(fresh)
        return out

    async def delete(self, app: AppPrincipal, event: str, location_id: str | None) -> None:
        found = await self._find(
            app, _check_event(event), location_id, any_location=location_id is None
        )
        if not found:
            raise NotFound(f"no webhook registered for '{event}'")
        for ep in found:
            await self.webhooks.delete_endpoint(app, app.app_id, ep["id"])
