"""The runtime container: settings plus the opened adapters and services.

:meth:`Runtime.open` is where ordercast is put together: storage, bus, services, webhook
delivery, the POS flow, and the WebSocket gateways (Doshii, Pusher, STOMP), each built from
its collaborators and installed on the one gateway server. ``app.py`` (the HTTP API) and
``cli.py`` (``ordercast run``) open a runtime and serve it; tests open their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordercast.bus import open_bus
from ordercast.cluster import open_registry
from ordercast.delivery.doshii import DoshiiWebhooks
from ordercast.delivery.outbox import OutboxHook
from ordercast.delivery.pusher_webhooks import PusherWebhooks
from ordercast.delivery.timers import TimerRunner
from ordercast.delivery.worker import DeliveryWorker
from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.domain.pos_flow import plan_timers
from ordercast.errors import ConfigError, OrdercastError
from ordercast.gateway.cluster import new_node_id
from ordercast.gateway.doshii import DoshiiGateway
from ordercast.gateway.hub import Hub
from ordercast.gateway.pusher import PusherGateway
from ordercast.gateway.server import GatewayServer
from ordercast.gateway.stomp import StompConfig, StompGateway
from ordercast.metrics import count_events
from ordercast.ports import LAGGED, Bus, Clock, Ids, Store
from ordercast.protocols.logins import LoginLimiter
from ordercast.protocols.netguard import parse_allow_cidrs
from ordercast.services.accounts import AccountService, Passwords
from ordercast.services.common import SYSTEM_IDS, SystemClock
from ordercast.services.directory import Directory
from ordercast.services.doshii import DoshiiAuth
from ordercast.services.jwtokens import JwtSigner, generate_private_key_pem
from ordercast.services.orders import OrderService
from ordercast.services.pos_flow import PosFlowService
from ordercast.services.tokens import TokenSigner
from ordercast.services.webhooks import WebhookService
from ordercast.settings import Settings
from ordercast.storage import open_store
from ordercast.storage.outbox import SqlOutbox

DEMO_KEY = "demo"


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: Bus
    clock: Clock
    ids: Ids
    directory: Directory
    orders: OrderService
    admin_token: str
    # The WebSocket gateway (routes registered here; listening only after ``gateway.start()``)
    # and its one bus listener. See ``gateway/server.py`` for how a protocol plugs in.
    hub: Hub
    gateway: GatewayServer
    # The protocol gateways installed on it (``_open_gateways``).
    pusher: PusherGateway = field(init=False)
    stomp: StompGateway = field(init=False)
    doshii: DoshiiGateway = field(init=False)
    # Webhooks: endpoint management, and the delivery worker once ``start_delivery()`` ran.
    webhooks: WebhookService | None = None
    outbox_hook: OutboxHook | None = None
    delivery: DeliveryWorker | None = None
    # POS flow (price → commit → fire) and its timer runner once ``start_timers()`` ran.
    pos: PosFlowService | None = None
    timers: TimerRunner | None = None
    # Pusher server webhooks: the gateway's channel events into the outbox.
    pusher_webhooks: PusherWebhooks | None = None
    # Doshii Partner API: its JWT auth and its webhook registrations (api/doshii.py).
    doshii_auth: DoshiiAuth | None = None
    doshii_webhooks: DoshiiWebhooks | None = None
    # Password logins (staff, KDS, customers) and the OAuth2 token grants.
    accounts: AccountService = field(init=False)
    # ``ordercast worker``: wakes delivery and timers on the changes other processes publish.
    follower: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, settings: Settings, clock: Clock | None = None, ids: Ids | None = None
    ) -> Runtime:
        clock = clock or SystemClock()
        ids = ids or SYSTEM_IDS
        store = open_store(
            settings.database_url, settings.database_pool_size, settings.order_cache_size
        )
        await store.migrate()
        bus = open_bus(settings.bus_url, settings.prefix)
        await bus.start()
        # Dev mode keeps generated secrets in the database so restarts keep them.
        admin_token = settings.admin_token or await _kept(store, ids, "admin_token", "oca_")
        secret_key = settings.secret_key or await _kept(store, ids, "secret_key", "")
        # The issuer must be the same on every node sharing the database (each node has its
        # own address): the public URL when set, else the constant "ordercast".
        issuer = settings.public_url.rstrip("/") if settings.public_url else "ordercast"
        signer = JwtSigner(await _jwt_key(store, settings), issuer, legacy=TokenSigner(secret_key))
        directory = Directory(store, bus, clock, signer, admin_token, ids)
        directory.logins = LoginLimiter(settings.login_max_failures, settings.login_window_seconds)
        orders = OrderService(store, bus, clock, ids)
        orders.after_commit.append(count_events)
        hub = Hub(bus, store=store)
        gateway = GatewayServer(hub, settings.host, settings.ws_port)
        gateway.trusted_proxies = parse_allow_cidrs(
            settings.trusted_proxies, "ORDERCAST_TRUSTED_PROXIES"
        )
        runtime = cls(
            settings, store, bus, clock, ids, directory, orders, admin_token, hub, gateway
        )
        runtime.doshii_auth = DoshiiAuth(directory, clock)
        runtime._open_webhooks()
        runtime._open_gateways()
        runtime._open_pos_flow()
        runtime.accounts = AccountService(
            store,
            store.accounts(),
            clock,
            signer,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            passwords=Passwords(settings.argon2_memory_kib, settings.argon2_time_cost),
            ids=ids,
        )
        return runtime

    def _open_gateways(self) -> None:
        """The WebSocket gateways, installed on ``self.gateway`` in the order its routes are
        tried: Doshii, Pusher, STOMP (hub consumers: Pusher, STOMP, and Doshii once the
        server starts)."""
        s = self.settings
        assert self.doshii_auth is not None
        # Before Pusher's /app/{key}: /app/socket is the Doshii socket, not a Pusher app.
        self.doshii = DoshiiGateway(self.store, self.doshii_auth, s.base_url)
        self.doshii.install(self.gateway)
        # Several nodes (a redis:// bus): counts, presence and relays through Redis.
        registry = open_registry(s.bus_url, s.prefix, new_node_id())
        self.pusher = PusherGateway(
            self.store,
            self.clock,
            webhooks=self.pusher_webhooks,
            cluster=registry,
            bus=self.bus,
            heartbeat=s.cluster_heartbeat,
            node_timeout=s.cluster_node_timeout,
        )
        self.pusher.install(self.gateway)
        if self.pusher_webhooks is not None and registry.shared:
            # a held vacated/removed webhook is dropped if the cluster undid it meanwhile
            self.pusher_webhooks.recheck = self.pusher.cluster.still_true
        self.stomp = StompGateway(self.store, self.directory, self.clock, StompConfig())
        self.stomp.install(self.gateway)  # /ws and /websocket

    def _open_pos_flow(self) -> None:
        """Register the POS flow's timer hook (same transaction as the order's events)."""
        timeout = self.settings.pos_callback_timeout
        timers = self.store.timers(
            lambda order, events: plan_timers(order, events, timeout), new_id=self.ids.new_id
        )
        self.store.add_tx_hook(timers.hook)
        self.orders.pos_flow_location = timers.pos_flow_location
        self.pos = PosFlowService(self.orders, timers, self.clock, timeout)

    async def start_timers(self) -> TimerRunner:
        """Run the POS flow's due timers in this process (``ordercast run`` does); what fell
        due while no process ran is run at once."""
        if self.timers is not None:
            return self.timers
        assert self.pos is not None
        runner = TimerRunner(
            self.pos.timers, self.pos, poll_seconds=self.settings.pos_timer_poll_seconds
        )

        def wake_if_pos_flow(order: Order, _records: list[EventRecord]) -> None:
            # Only POS-flow orders set or cancel timers (storage/timers.py's hook); a wake
            # costs the runner two queries, so other orders' changes leave it asleep.
            if order.pos_flow:
                runner.wake()

        self.orders.after_commit.append(wake_if_pos_flow)
        await runner.start()
        self.timers = runner
        return runner

    def _open_webhooks(self) -> None:
        """Register the webhook outbox hook (every process that writes orders enqueues)."""
        allow = parse_allow_cidrs(self.settings.webhook_allow_cidrs)
        outbox = self.store.outbox()
        # Deferred changes live in the SQL outbox's table (every Runtime store is SQL).
        changes = outbox if isinstance(outbox, SqlOutbox) else None
        defer = self.settings.outbox_render == "worker" and changes is not None
        self.outbox_hook = OutboxHook(
            outbox, self.settings.base_url, ids=self.ids, changes=changes, defer=defer
        )
        self.store.add_tx_hook(self.outbox_hook)
        self.webhooks = WebhookService(self.store, outbox, allow, ids=self.ids)
        self.doshii_webhooks = DoshiiWebhooks(self.webhooks, self.settings.base_url)
        self.pusher_webhooks = PusherWebhooks(outbox, ids=self.ids)

    async def start_delivery(self) -> DeliveryWorker:
        """Start the webhook delivery worker in this process (``ordercast run`` does)."""
        from ordercast.delivery.sender import Sender
        from ordercast.delivery.worker import WorkerConfig, policy_from_schedule

        if self.delivery is not None:
            return self.delivery
        assert self.webhooks is not None
        s = self.settings
        try:
            policy = policy_from_schedule(s.webhook_retry_schedule)
        except (ValueError, OrdercastError) as exc:
            raise ConfigError(f"bad ORDERCAST_WEBHOOK_RETRY_SCHEDULE: {exc}") from exc
        config = WorkerConfig(
            lease_seconds=s.webhook_lease_seconds,
            poll_seconds=s.webhook_poll_seconds,
            max_in_flight=s.webhook_max_in_flight,
            coalesce_seconds=s.webhook_coalesce_seconds,
            policy=policy,
        )
        sender = Sender(self.webhooks.allow_cidrs, timeout=s.webhook_timeout)
        hook = self.outbox_hook
        worker = DeliveryWorker(
            self.webhooks.outbox,
            sender,
            config,
            expand=hook.expand if hook is not None and hook.changes is not None else None,
        )

        def wake_if_queued(order: Order, records: list[EventRecord]) -> None:
            if hook is None or hook.queued(order, records):
                worker.wake()

        self.orders.after_commit.append(wake_if_queued)
        self.webhooks.on_replay.append(worker.wake)
        if self.pusher_webhooks is not None:
            self.pusher_webhooks.on_enqueue.append(worker.wake)
        await worker.start()
        self.delivery = worker
        return worker

    def follow_bus(self) -> None:
        """Wake this process's delivery worker and timer runner on every order change another
        process publishes on a shared bus (``ordercast worker``: it writes no orders itself,
        so its own after-commit hooks never fire). On ``memory://`` nothing crosses
        processes and they wake on their polls (ORDERCAST_WEBHOOK_POLL_SECONDS,
        ORDERCAST_POS_TIMER_POLL_SECONDS)."""
        if self.follower is not None:
            return
        listener = self.bus.listen()

        async def follow() -> None:
            try:
                async for message in listener:
                    if message.kind not in ("order", LAGGED):
                        continue
                    if self.delivery is not None:
                        self.delivery.wake()
                    order = message.payload.get("order")
                    pos_flow = isinstance(order, dict) and bool(order.get("pos_flow"))
                    if self.timers is not None and (pos_flow or message.kind == LAGGED):
                        self.timers.wake()
            finally:
                await listener.close()

        self.follower = asyncio.create_task(follow(), name="worker-follow-bus")

    async def close(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower
            self.follower = None
        if self.timers is not None:
            await self.timers.stop()
            self.timers = None
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        await self.gateway.stop()
        if self.pusher_webhooks is not None:
            await self.pusher_webhooks.close()  # what the gateway reported on its way down
        await self.bus.close()
        await self.store.close()

    async def demo(self) -> dict[str, Any] | None:
        raw = await self.store.get_meta(DEMO_KEY)
        return json.loads(raw) if raw else None

    async def ensure_demo(self) -> tuple[dict[str, Any], bool]:
        """Create the demo tenant, location and app once; returns (demo, created_now)."""
        existing = await self.demo()
        if existing is not None:
            return existing, False
        # Claim the slot first so two starting processes never both create one.
        if not await self.store.insert_meta(DEMO_KEY, "{}"):
            return (await self.demo()) or {}, False
        tenant = await self.directory.create_tenant("Demo Restaurants")
        location = await self.directory.create_location(
            tenant_id=tenant.id,
            name="Demo Burger Bar",
            timezone="America/New_York",
            settings={"tracker_labels": {"preparing": "In the kitchen", "ready": "Ready"}},
        )
        app = await self.directory.create_app(
            tenant_id=tenant.id,
            name="Demo ordering app",
            kind="channel",
            location_ids=[location.id],
        )
        demo = {
            "tenant_id": tenant.id,
            "location_id": location.id,
            "app_id": app.app.id,
            "app_key": app.app.key,
            "app_secret": app.secret,
        }
        await self.store.put_meta(DEMO_KEY, json.dumps(demo))
        return demo, True


async def _jwt_key(store: Store, settings: Settings) -> str:
    """The PEM key that signs JWTs: from settings (required in production), else generated
    once and kept in the database (dev)."""
    if settings.jwt_private_key:
        return settings.jwt_private_key
    if settings.jwt_private_key_file:
        try:
            path = Path(settings.jwt_private_key_file)
            return await asyncio.to_thread(path.read_text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read ORDERCAST_JWT_PRIVATE_KEY_FILE {settings.jwt_private_key_file}: "
                f"{exc.strerror}"
            ) from exc
    existing = await store.get_meta("jwt_private_key")
    if existing:
        return existing
    candidate = generate_private_key_pem()
    if await store.insert_meta("jwt_private_key", candidate):
        return candidate
    value = await store.get_meta("jwt_private_key")
    assert value is not None
    return value


async def _kept(store: Store, ids: Ids, key: str, prefix: str) -> str:
    """A generated secret kept in the database: the same on every start."""
    candidate = ids.new_secret(prefix, 32)
    if await store.insert_meta(key, candidate):
        return candidate
    value = await store.get_meta(key)
    assert value is not None
    return value
