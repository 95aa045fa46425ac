"""Webhook endpoint use cases: register, change, rotate secrets, read attempts, replay.

An app manages only its own endpoints (an admin manages any): another app of the same
tenant is refused (403), another tenant's app does not exist (404).
"""

from __future__ import annotations

import secrets as pysecrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ordercast.dialects import WEBHOOK_DIALECTS, validate_event_types, webhook_dialect
from ordercast.domain.access import Admin, AppPrincipal, Principal, check_app_access
from ordercast.domain.isotime import iso, iso_from_unix
from ordercast.errors import Forbidden, NotFound, ValidationError
from ordercast.ports import App, Ids, Outbox, Store
from ordercast.protocols.netguard import Network, validate_webhook_url
from ordercast.protocols.webhooks import parse_secret, secret_from_bytes
from ordercast.services.common import SYSTEM_IDS

DEFAULT_MAX_CONCURRENCY: Final = 16
MAX_CONCURRENCY_LIMIT: Final = 1000
DEFAULT_GRACE_SECONDS: Final = 24 * 3600
MAX_GRACE_SECONDS: Final = 7 * 24 * 3600
MAX_OLD_SECRETS: Final = 5
MESSAGE_STATUSES: Final = ("pending", "delivering", "delivered", "failed", "skipped")
REPLAYABLE: Final = ("pending", "delivered", "failed", "skipped")


def _iso_unix(ts: float | None) -> str | None:
    return iso_from_unix(ts) if ts is not None else None


def endpoint_view(ep: dict[str, Any], now: float) -> dict[str, Any]:
    """The public endpoint resource (never the secret)."""
    active_old = [o for o in ep["old_secrets"] if float(o.get("expires_at", 0)) > now]
    return {
        "id": ep["id"],
        "app_id": ep["app_id"],
        "url": ep["url"],
        "dialect": ep["dialect"],
        "event_types": ep["event_types"],
        "description": ep["description"],
        "enabled": ep["enabled"],
        "disabled_reason": ep["disabled_reason"],
        "fifo": ep["fifo"],
        "max_concurrency": ep["max_concurrency"],
        "failing_since": _iso_unix(ep["failing_since"]),
        "previous_secrets_valid_until": [_iso_unix(float(o["expires_at"])) for o in active_old],
        "created_at": ep["created_at"],
        "updated_at": ep["updated_at"],
    }


def attempt_view(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": a["id"],
        "message_id": a["message_id"],
        "attempt": a["attempt"],
        "trigger": a["trigger"],
        "url": a["url"],
        "at": a["at"],
        "webhook_timestamp": a["webhook_timestamp"],
        "status_code": a["status_code"],
        "outcome": a["outcome"],
        "reason": a["reason"],
        "latency_ms": a["latency_ms"],
        "response_body": a["response_body"],
        "next_attempt_at": _iso_unix(a["next_attempt_at"]),
        "cursor": a["pos"],
    }


def message_view(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": m["id"],
        "order_id": m["order_id"],
        "event_id": m["event_id"],
        "seq": m["seq"],
        "event_type": m["event_type"],
        "wire_type": m["wire_type"],
        "status": m["status"],
        "attempts": m["attempts"],
        "next_attempt_at": _iso_unix(m["next_attempt_at"]) if m["status"] == "pending" else None,
        "last_error": m["last_error"],
        "event_at": m["event_at"],
        "payload": m["body"],
        "cursor": m["pos"],
    }


class WebhookService:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        allow_cidrs: Sequence[Network],
        clock: Callable[[], float] = time.time,
        ids: Ids = SYSTEM_IDS,
    ) -> None:
        self.store = store
        self.ids = ids
        self.outbox = outbox
        self.allow_cidrs = tuple(allow_cidrs)
        self.clock = clock
        self.on_replay: list[Callable[[], None]] = []

    # -- access ------------------------------------------------------------------------

    async def _app(self, principal: Principal, app_id: str) -> App:
        if not isinstance(principal, Admin | AppPrincipal):
            raise Forbidden("webhook endpoints are managed by their app or the admin")
        app = await self.store.get_app(app_id)
        if app is None:
            raise NotFound(f"app {app_id} not found")
        check_app_access(principal, app.id, app.tenant_id)
        return app

    async def _endpoint(self, principal: Principal, app_id: str, eid: str) -> dict[str, Any]:
        app = await self._app(principal, app_id)
        ep = await self.outbox.get_endpoint(eid)
        if ep is None or ep["app_id"] != app.id:
            raise NotFound(f"endpoint {eid} not found")
        return ep

    # -- validation ----------------------------------------------------------------------

    def validate_url(self, url: str) -> str:
        """The webhook URL, checked against the SSRF guard (ValidationError, field url)."""
        return self._url(url)

    def _url(self, url: str) -> str:
        try:
            validate_webhook_url(url, allow_cidrs=self.allow_cidrs)
        except ValidationError as exc:
            raise ValidationError(exc.detail, field="url") from exc
        return url

    @staticmethod
    def _concurrency(value: int) -> int:
        if isinstance(value, bool) or not 1 <= value <= MAX_CONCURRENCY_LIMIT:
            raise ValidationError(
                f"max_concurrency must be 1 to {MAX_CONCURRENCY_LIMIT}", field="max_concurrency"
            )
        return value

    @staticmethod
    def _secret(value: str | None) -> str:
        if value is None:
            return secret_from_bytes(pysecrets.token_bytes(32))
        try:
            parse_secret(value)
        except ValidationError as exc:
            raise ValidationError(exc.detail, field="secret") from exc
        return value

    # -- endpoints -----------------------------------------------------------------------

    async def create_endpoint(
        self,
        principal: Principal,
        app_id: str,
        *,
        url: str,
        dialect: str = "ordercast",
        event_types: list[str] | None = None,
        fifo: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        enabled: bool = True,
        description: str | None = None,
        secret: str | None = None,
        doshii: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """``doshii``: the Doshii columns (``auth_key``, ``auth_token``, ``location_id``)
        of an endpoint registered through ``/partner/v3/webhooks``."""
        app = await self._app(principal, app_id)
        self._url(url)
        webhook_dialect(dialect)
        filters = validate_event_types(dialect, event_types)
        now = iso(datetime.now(UTC))
        endpoint_id = self.ids.new_id("ep_")
        new_secret = self._secret(secret)
        values: dict[str, Any] = {
            "id": endpoint_id,
            "app_id": app.id,
            "tenant_id": app.tenant_id,
            "url": url,
            "dialect": dialect,
            "event_types": filters,
            "description": description,
            "secret": new_secret,
            "old_secrets": [],
            "enabled": enabled,
            "disabled_reason": None if enabled else "disabled on creation",
            "fifo": fifo,
            "max_concurrency": self._concurrency(max_concurrency),
            "failing_since": None,
            "created_at": now,
            "updated_at": now,
            **(doshii or {}),
        }
        await self.outbox.create_endpoint(values)
        ep = await self.outbox.get_endpoint(endpoint_id)
        assert ep is not None
        return endpoint_view(ep, self.clock()), new_secret

    async def list_endpoints(self, principal: Principal, app_id: str) -> list[dict[str, Any]]:
        app = await self._app(principal, app_id)
        now = self.clock()
        return [endpoint_view(ep, now) for ep in await self.outbox.list_endpoints(app.id)]

    async def get_endpoint(self, principal: Principal, app_id: str, eid: str) -> dict[str, Any]:
        ep = await self._endpoint(principal, app_id, eid)
        view = endpoint_view(ep, self.clock())
        view["messages"] = await self.outbox.count_messages(eid)
        return view

    async def update_endpoint(
        self, principal: Principal, app_id: str, eid: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        ep = await self._endpoint(principal, app_id, eid)
        values: dict[str, Any] = {}
        dialect = changes.get("dialect", ep["dialect"])
        if "dialect" in changes:
            webhook_dialect(dialect)
            values["dialect"] = dialect
        if "url" in changes:
            values["url"] = self._url(changes["url"])
        if "event_types" in changes or "dialect" in changes:
            values["event_types"] = validate_event_types(
                dialect, changes.get("event_types", ep["event_types"])
            )
        if "fifo" in changes:
            values["fifo"] = bool(changes["fifo"])
        if "max_concurrency" in changes:
            values["max_concurrency"] = self._concurrency(changes["max_concurrency"])
        if "description" in changes:
            values["description"] = changes["description"]
        if "enabled" in changes:
            enabled = bool(changes["enabled"])
            values["enabled"] = enabled
            values["disabled_reason"] = None if enabled else "disabled by request"
            if enabled:
                values["failing_since"] = None  # a fresh start for the 5-day rule
        if values:
            values["updated_at"] = iso(datetime.now(UTC))
            await self.outbox.update_endpoint(eid, values)
        fresh = await self.outbox.get_endpoint(eid)
        assert fresh is not None
        return endpoint_view(fresh, self.clock())

    async def delete_endpoint(self, principal: Principal, app_id: str, eid: str) -> None:
        await self._endpoint(principal, app_id, eid)
        await self.outbox.delete_endpoint(eid)

    async def rotate_secret(
        self,
        principal: Principal,
        app_id: str,
        eid: str,
        *,
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
        secret: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """New current secret; the old one keeps signing for ``grace_seconds`` (both
        signatures go in ``webhook-signature``), so receivers can switch without a gap."""
        ep = await self._endpoint(principal, app_id, eid)
        if isinstance(grace_seconds, bool) or not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise ValidationError(
                f"grace_seconds must be 0 to {MAX_GRACE_SECONDS}", field="grace_seconds"
            )
        new = self._secret(secret)
        now = self.clock()
        old = [o for o in ep["old_secrets"] if float(o.get("expires_at", 0)) > now]
        if grace_seconds > 0:
            old.append({"secret": ep["secret"], "expires_at": now + grace_seconds})
        old = old[-MAX_OLD_SECRETS:]
        await self.outbox.update_endpoint(
            eid,
            {"secret": new, "old_secrets": old, "updated_at": iso(datetime.now(UTC))},
        )
        fresh = await self.outbox.get_endpoint(eid)
        assert fresh is not None
        return endpoint_view(fresh, now), new

    # -- attempts, messages, replay -------------------------------------------------------

    async def attempts(
        self,
        principal: Principal,
        app_id: str,
        eid: str,
        *,
        limit: int = 50,
        before: int | None = None,
        message_id: str | None = None,
    ) -> list[dict[str, Any]]:
        await self._endpoint(principal, app_id, eid)
        rows = await self.outbox.list_attempts(
            eid, limit=limit, before=before, message_id=message_id
        )
        return [attempt_view(a) for a in rows]

    async def messages(
        self,
        principal: Principal,
        app_id: str,
        eid: str,
        *,
        status: str | None = None,
        order_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        await self._endpoint(principal, app_id, eid)
        if status is not None and status not in MESSAGE_STATUSES:
            raise ValidationError(
                f"unknown status '{status}'; use one of: {', '.join(MESSAGE_STATUSES)}",
                field="status",
            )
        rows = await self.outbox.list_messages(
            eid, status=status, order_id=order_id, limit=limit, before=before
        )
        return [message_view(m) for m in rows]

    async def replay(
        self,
        principal: Principal,
        app_id: str,
        eid: str,
        *,
        since: str | None = None,
        until: str | None = None,
        order_id: str | None = None,
        event_id: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> int:
        """Send matching messages again, now, with their original ``webhook-id``."""
        await self._endpoint(principal, app_id, eid)
        chosen = tuple(statuses) if statuses else REPLAYABLE
        bad = [s for s in chosen if s not in REPLAYABLE]
        if bad:
            raise ValidationError(
                f"cannot replay status '{bad[0]}'; use any of: {', '.join(REPLAYABLE)}",
                field="status",
            )
        if since is not None and until is not None and until <= since:
            raise ValidationError("until must be after since", field="until")
        count = await self.outbox.replay(
            eid,
            now=self.clock(),
            since=since,
            until=until,
            order_id=order_id,
            event_id=event_id,
            statuses=chosen,
        )
        for callback in self.on_replay:
            callback()
        return count


__all__ = ["WEBHOOK_DIALECTS", "WebhookService", "attempt_view", "endpoint_view"]
