"""The seeded scheduler: a world of tenants, locations, apps, webhook endpoints and
subscribers on a live cluster, then random interleaved commands through the public REST API.

Every choice comes from ``random.Random(seed)`` and from the scheduler's own bookkeeping
(never from server responses), so one seed always issues the same command sequence; the
command log (one line per step) is written next to the node logs for replaying by eye.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .nodes import ADMIN, Cluster
from .wire import HookReceiver, LoopbackPos, PusherSub, StompSub

# Transition targets and weights: mostly forward moves (skips allowed), some stale ones,
# terminal failures, and invalid ones (an unknown state, reopening an open order).
ORDER_STATES = {
    "submitted": 1, "accepted": 4, "held": 2, "preparing": 4, "ready": 4, "handed_off": 2,
    "completed": 2, "rejected": 1, "cancelled": 1, "failed": 1, "priced": 1, "draft": 1,
    "reopened": 1, "nonsense": 1,
}  # fmt: skip
TERMINAL = {"completed", "rejected", "cancelled", "failed"}
COURIER_FLOW = ["assigned", "at_pickup", "picked_up", "at_dropoff", "delivered"]
L2_LABELS = {"accepted": "Got it", "preparing": "Cooking"}


@dataclass
class Loc:
    key: str
    id: str
    tenant: str
    tenant_id: str
    settings: dict[str, Any]
    labels: dict[str, str]


@dataclass
class App:
    key: str
    id: str
    kind: str
    tenant_id: str
    app_key: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.app_key, self.secret)


@dataclass
class OrderRef:
    idx: int
    id: str
    loc: Loc
    type: str
    user: str | None
    app: App  # the app that created it (acts on it)
    status: str = "submitted"  # as the last response said (used to pick courier work only)
    deliveries: list[list[Any]] = field(default_factory=list)  # [delivery id, next step]
    doshii: dict[str, int] = field(default_factory=dict)  # app key -> version at subscribe


@dataclass
class World:
    http: httpx.AsyncClient  # the writer node
    read_http: httpx.AsyncClient  # the reader node
    cluster: Cluster
    locs: dict[str, Loc] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, list[str]] = field(default_factory=dict)  # tenant key -> user ids
    tokens: dict[str, str] = field(default_factory=dict)  # user id -> access token
    hooks: dict[str, HookReceiver] = field(default_factory=dict)
    pos: LoopbackPos | None = None
    orders: list[OrderRef] = field(default_factory=list)
    pusher: dict[str, PusherSub] = field(default_factory=dict)
    stomp: dict[str, StompSub] = field(default_factory=dict)
    venue_patches: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # found while driving
    log: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.log.append(f"{len(self.log):4d} {line}")

    async def floor(self) -> dict[str, int]:
        """Every order's version now (read after a subscription was confirmed)."""
        out: dict[str, int] = {}
        for loc in self.locs.values():
            app = self.apps["chan1" if loc.tenant == "T1" else "chan2"]
            r = await self.http.get(
                "/v1/orders", params={"location_id": loc.id, "limit": 500}, auth=app.auth
            )
            assert r.status_code == 200, r.text
            out.update({o["id"]: int(o["version"]) for o in r.json()["orders"]})
        return out


class Driver:
    def __init__(self, world: World, seed: int, steps: int) -> None:
        self.w = world
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        self.step = 0
        self.up_at: dict[str, int] = {}  # receiver -> step when it answers 200 again

    # -- set-up ---------------------------------------------------------------------------

    async def admin(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.w.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        out: dict[str, Any] = r.json()
        return out

    async def setup(self) -> None:
        w = self.w
        tenants = {
            t: (await self.admin("POST", "/v1/tenants", {"name": t}))["id"] for t in ("T1", "T2")
        }
        specs = [
            ("L1", "T1", "America/New_York", {}),
            ("L2", "T1", "Europe/London", {"tracker_labels": L2_LABELS, "legacy_tracker": True}),
            ("L3", "T1", "UTC", {}),
            ("L4", "T2", "UTC", {}),
        ]
        for key, tenant, tz, settings in specs:
            body = {"tenant_id": tenants[tenant], "name": key, "timezone": tz, "settings": settings}
            loc = await self.admin("POST", "/v1/locations", body)
            labels = dict(settings.get("tracker_labels", {}))
            w.locs[key] = Loc(key, loc["id"], tenant, tenants[tenant], settings, labels)
        app_specs = [
            ("chan1", "channel", "T1", ["L1", "L2", "L3"]),
            ("pos1", "pos", "T1", ["L1", "L2"]),
            ("rider1", "rider", "T1", ["L1", "L2"]),
            ("loy1", "loyalty", "T1", ["L1", "L2"]),
            ("kds1", "kds", "T1", ["L1", "L2"]),
            ("posL3", "pos", "T1", ["L3"]),
            ("chan2", "channel", "T2", ["L4"]),
            ("kds2", "kds", "T2", ["L4"]),
        ]
        for key, kind, tenant, locs in app_specs:
            body = {
                "tenant_id": tenants[tenant],
                "name": key,
                "kind": kind,
                "location_ids": [w.locs[loc].id for loc in locs],
            }
            app = await self.admin("POST", "/v1/apps", body)
            w.apps[key] = App(key, app["id"], kind, tenants[tenant], app["key"], app["secret"])
        # Webhook endpoints: every dialect, FIFO on and off.
        hook_specs = [
            ("chan1", "ordercast", True),
            ("chan1", "ordatic", False),
            ("pos1", "ordatic", True),
            ("pos1", "doshii", True),
            ("rider1", "ordatic", False),
            ("rider1", "rbi", False),
            ("loy1", "ordercast", False),
            ("loy1", "doshii", False),
            ("loy1", "ordatic", True),
            ("kds1", "rbi", True),
            ("chan2", "ordercast", False),
        ]
        pos = LoopbackPos("posL3-rbi-fifo")
        pos.key, pos.app_secret = w.apps["posL3"].app_key, w.apps["posL3"].secret
        w.pos = pos
        receivers: list[tuple[str, HookReceiver]] = [("posL3", pos)]
        for app_key, dialect, fifo in hook_specs:
            name = f"{app_key}-{dialect}-{'fifo' if fifo else 'free'}"
            receivers.append((app_key, HookReceiver(name, dialect, fifo, w.apps[app_key].kind)))
        for app_key, receiver in receivers:
            await receiver.start()
            app = w.apps[app_key]
            ep = await self.admin(
                "POST",
                f"/v1/apps/{app.id}/endpoints",
                {"url": receiver.url, "dialect": receiver.dialect, "fifo": receiver.fifo},
            )
            receiver.secret = ep["secret"]
            w.hooks[receiver.name] = receiver
        # Users and their access tokens (issued by each tenant's channel app).
        w.users = {"T1": ["u1", "u2", "u3"], "T2": ["u4"]}
        for tenant, users in w.users.items():
            app = w.apps["chan1" if tenant == "T1" else "chan2"]
            for user in users:
                r = await w.http.post(f"/v1/users/{user}/tokens", auth=app.auth, json={})
                assert r.status_code in (200, 201), r.text
                w.tokens[user] = r.json()["access_token"]
        await self.initial_subscribers()

    async def initial_subscribers(self) -> None:
        w = self.w
        ws = w.cluster.reader.ws
        base = w.cluster.reader.base
        t1, t2 = w.locs["L1"].tenant_id, w.locs["L4"].tenant_id
        kds1, kds2, chan1 = w.apps["kds1"], w.apps["kds2"], w.apps["chan1"]
        stomp = [
            StompSub("kds-L1-a", ws, f"/kds/{t1}/{w.locs['L1'].id}", login=kds1.app_key, passcode=kds1.secret),
            StompSub("kds-L1-b", ws, f"/kds/{t1}/{w.locs['L1'].id}", login=kds1.app_key, passcode=kds1.secret),
            StompSub("kds-L2", ws, f"/kds/{t1}/{w.locs['L2'].id}", login=kds1.app_key, passcode=kds1.secret),
            StompSub("kds-L3", ws, f"/kds/{t1}/{w.locs['L3'].id}", login=chan1.app_key, passcode=chan1.secret),
            StompSub("kds-L4", ws, f"/kds/{t2}/{w.locs['L4'].id}", login=kds2.app_key, passcode=kds2.secret),
            StompSub("user-orders-u1", ws, f"/order-changes/{t1}/u1", login=w.tokens["u1"]),
            StompSub("user-orders-u4", ws, f"/order-changes/{t2}/u4", login=w.tokens["u4"]),
            StompSub("kds-user-u1", ws, f"/kds/{t1}/u1", login=w.tokens["u1"]),
            StompSub("notifications-u2", ws, f"/notifications/{t1}/u2", login=w.tokens["u2"]),
            StompSub("notifications-u4", ws, f"/notifications/{t2}/u4", login=w.tokens["u4"]),
            StompSub("venue-L1", ws, f"/venue/{t1}/{w.locs['L1'].id}", login=kds1.app_key, passcode=kds1.secret),
            StompSub("venue-L4", ws, f"/venue/{t2}/{w.locs['L4'].id}", login=kds2.app_key, passcode=kds2.secret),
        ]  # fmt: skip
        pusher = [
            PusherSub("presence-L1", ws, base, kds1.app_key, f"presence-r-{w.locs['L1'].id}", secret=kds1.secret),
            PusherSub("presence-L3", ws, base, chan1.app_key, f"presence-r-{w.locs['L3'].id}", secret=chan1.secret),
            PusherSub("presence-L4", ws, base, kds2.app_key, f"presence-r-{w.locs['L4'].id}", secret=kds2.secret),
        ]  # fmt: skip
        for sub in stomp:
            w.stomp[sub.name] = sub
            await sub.connect(w.floor)
        for psub in pusher:
            w.pusher[psub.name] = psub
            await psub.connect(w.floor)
        w.note(f"subscribed {len(stomp)} STOMP and {len(pusher)} Pusher subscribers")

    # -- commands -------------------------------------------------------------------------

    async def call(self, app: App, method: str, path: str, body: Any = None) -> httpx.Response:
        r = await self.w.http.request(method, path, json=body, auth=app.auth)
        self.w.note(f"{app.key} {method} {path} {json.dumps(body)[:160]} -> {r.status_code}")
        if r.status_code == 200 and isinstance(r.json().get("order"), dict):
            order = r.json()["order"]
            for ref in self.w.orders:
                if ref.id == order["id"]:
                    ref.status = order["status"]
        if r.status_code >= 500:
            self.w.violations.append(
                f"server error {r.status_code} on {method} {path}: {r.text[:300]}"
            )
        return r

    def pick_order(self) -> OrderRef:
        # Favour recent orders so each one sees many changes, but keep touching old ones.
        n = len(self.w.orders)
        if self.rng.random() < 0.7:
            return self.w.orders[self.rng.randrange(max(0, n - 8), n)]
        return self.w.orders[self.rng.randrange(n)]

    async def create_order(self) -> None:
        w, rng = self.w, self.rng
        loc = w.locs[rng.choice(["L1", "L1", "L2", "L3", "L4"])]
        app = w.apps["chan1" if loc.tenant == "T1" else "chan2"]
        users = w.users[loc.tenant]
        user = rng.choice([*users, None])
        kind = rng.choice(["pickup", "delivery", "delivery", "dine_in"])
        idx = len(w.orders)
        body: dict[str, Any] = {
            "location_id": loc.id,
            "type": kind,
            "items": [
                {"pos_id": "burger", "name": "Burger", "quantity": 1 + idx % 3, "unit_price": 899},
                {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350},
            ],
            "consumer": {"name": f"Guest {idx}"},
            "external_order_ref": f"conf-{self.seed}-{idx}",
        }
        if user is not None:
            body["user_id"] = user
        if loc.key == "L3":
            body["fire_order_in_seconds"] = rng.choice([0, 0, None])
        r = await self.call(app, "POST", "/v1/orders", body)
        if r.status_code != 201:
            w.violations.append(f"create order refused: {r.status_code} {r.text[:300]}")
            return
        ref = OrderRef(idx, r.json()["id"], loc, kind, user, app)
        w.orders.append(ref)
        w.note(f"order #{idx} = {ref.id} at {loc.key} ({kind}, user {user})")
        # Doshii's apps register interest in the first orders they may see, then at random.
        if loc.key in ("L1", "L2"):
            for app_key in ("pos1", "loy1"):
                if not any(app_key in o.doshii for o in w.orders):
                    await self.doshii_subscribe(ref, app_key)
        # Some orders get their own followers.
        if user is not None and rng.random() < 0.5:
            await self.follow_order(ref)

    async def follow_order(self, ref: OrderRef) -> None:
        w, rng = self.w, self.rng
        ws, base = w.cluster.reader.ws, w.cluster.reader.base
        assert ref.user is not None
        which = rng.choice(["pusher-customer", "stomp-order", "both", "staff"])
        if which in ("pusher-customer", "both"):
            sub = PusherSub(
                f"pusher-customer-{ref.idx}", ws, base, ref.app.app_key, f"private-o-{ref.id}",
                token=w.tokens[ref.user],
            )  # fmt: skip
            w.pusher[sub.name] = sub
            await sub.connect(w.floor)
        if which in ("stomp-order", "both"):
            ssub = StompSub(
                f"stomp-order-{ref.idx}", ws, f"/order-changes/{ref.user}/{ref.id}",
                login=w.tokens[ref.user], order_id=ref.id,
            )  # fmt: skip
            w.stomp[ssub.name] = ssub
            await ssub.connect(w.floor)
        if which == "staff":
            app = (
                w.apps["kds1"]
                if ref.loc.key in ("L1", "L2")
                else w.apps["chan1" if ref.loc.tenant == "T1" else "chan2"]
            )
            psub = PusherSub(
                f"pusher-staff-{ref.idx}", ws, base, app.app_key, f"private-o-{ref.id}",
                secret=app.secret,
            )  # fmt: skip
            w.pusher[psub.name] = psub
            await psub.connect(w.floor)
        w.note(f"follow #{ref.idx}: {which}")

    async def transition(self, ref: OrderRef | None = None) -> None:
        ref = ref or self.pick_order()
        to = self.rng.choices(list(ORDER_STATES), list(ORDER_STATES.values()))[0]
        body: dict[str, Any] = {"to": to}
        if to in ("rejected", "cancelled", "failed"):
            body["reason"] = "conformance"
        if to == "failed" and self.rng.random() < 0.5:
            body["errors"] = [{"code": "UNKNOWN", "message": "printer on fire"}]
        if to == "completed":
            body["how"] = self.rng.choice(["picked_up", "served", "closed", None])
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/transitions", body)
        self.expect_4xx_or_ok(r, {200, 409, 422})

    def expect_4xx_or_ok(self, r: httpx.Response, allowed: set[int]) -> None:
        if r.status_code not in allowed:
            self.w.violations.append(
                f"unexpected {r.status_code} for {r.request.url}: {r.text[:300]}"
            )
        elif r.status_code >= 400:
            ctype = r.headers.get("content-type", "")
            if "problem+json" not in ctype or "code" not in r.json():
                self.w.violations.append(
                    f"{r.status_code} without problem+json code: {r.text[:200]}"
                )

    async def confirmation(self, ref: OrderRef | None = None) -> None:
        ref = ref or self.pick_order()
        c = self.rng.choice([1, 2, 2, 3])
        body: dict[str, Any] = {"confirmation": c}
        if c == 2:
            body["adjustment"] = self.rng.choice(
                [{"time": 25}, {"items": ["fries"]}, {"time": 40, "options": ["bacon"]}]
            )
        if c == 3:
            body["reason"] = "kitchen closed"
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/confirmation", body)
        self.expect_4xx_or_ok(r, {200, 409, 422})

    async def notification(self, ref: OrderRef | None = None) -> None:
        ref = ref or self.pick_order()
        body = {
            "type": self.rng.choice(["delivery_fee_changed", "order_time_changed"]),
            "message": "heads up",
        }
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/notifications", body)
        self.expect_4xx_or_ok(r, {200, 409})

    async def note_(self, ref: OrderRef | None = None) -> None:
        ref = ref or self.pick_order()
        text = self.rng.choice(["Dave is making your sandwich", "Almost there", "Boxed up"])
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/notes", {"text": text})
        self.expect_4xx_or_ok(r, {200, 409})

    async def cancellation(self, ref: OrderRef | None = None) -> None:
        ref = ref or self.pick_order()
        body = {
            "reason": "changed my mind",
            "by": self.rng.choice(["customer", "venue"]),
            "request_only": self.rng.random() < 0.5,
        }
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/cancellation", body)
        self.expect_4xx_or_ok(r, {200, 409})

    async def courier(self) -> None:
        w, rng = self.w, self.rng
        candidates = [
            o for o in w.orders
            if o.type == "delivery" and o.loc.key != "L3" and o.status not in TERMINAL
        ]  # fmt: skip
        if not candidates:
            return
        busy = [o for o in candidates if any(d[1] < len(COURIER_FLOW) for d in o.deliveries)]
        ref = rng.choice(busy if busy and rng.random() < 0.8 else candidates)
        rider = w.apps["rider1"] if ref.loc.tenant == "T1" else ref.app
        if not ref.deliveries or rng.random() < 0.05:
            r = await self.call(
                rider, "POST", f"/v1/orders/{ref.id}/deliveries", {"provider": "conformance"}
            )
            self.expect_4xx_or_ok(r, {201, 409})
            if r.status_code == 201:
                ref.deliveries.append([r.json()["id"], 0])
            return
        delivery = rng.choice(ref.deliveries)
        step = delivery[1]
        body: dict[str, Any]
        if rng.random() < 0.15:  # a stale or out-of-order status
            body = {"status": rng.choice(COURIER_FLOW)}
        elif rng.random() < 0.1:
            body = {"status": "courier_picked_up"}  # a provider code from seed 000
        elif rng.random() < 0.1:
            body = {"location": {"lat": 51.5, "lng": -0.12}}
        elif rng.random() < 0.1:
            body = {"refund": {"amount": 350, "reason": "cold fries"}}
        elif step < len(COURIER_FLOW):
            body = {"status": COURIER_FLOW[step]}
            if COURIER_FLOW[step] == "delivered":
                # seed 002's proofDelivery is a string; an object is accepted too
                body["proof"] = rng.choice(
                    ["aGVsbG8gcHJvb2Y=", {"image": "aGVsbG8gcHJvb2Y=", "kind": "photo"}]
                )
            delivery[1] = step + 1
        else:
            body = {"status": "delivered"}
        r = await self.call(rider, "POST", f"/v1/deliveries/{delivery[0]}/status", body)
        self.expect_4xx_or_ok(r, {200, 409})

    async def doshii_subscribe(self, ref: OrderRef | None = None, app_key: str = "") -> None:
        if ref is None:
            candidates = [o for o in self.w.orders if o.loc.key in ("L1", "L2")]
            if not candidates:
                return
            ref = self.rng.choice(candidates)
        app = self.w.apps[app_key or self.rng.choice(["pos1", "loy1"])]
        if app.key in ref.doshii:
            return
        r = await self.call(app, "POST", f"/v1/orders/{ref.id}/subscription")
        if r.status_code == 200:
            ref.doshii[app.key] = int(r.json()["version"])
        else:
            self.w.violations.append(f"doshii subscription refused: {r.status_code} {r.text[:200]}")

    async def fire(self) -> None:
        candidates = [o for o in self.w.orders if o.loc.key == "L3"]
        if not candidates:
            return
        ref = self.rng.choice(candidates)
        r = await self.call(ref.app, "POST", f"/v1/orders/{ref.id}/fire", {})
        self.expect_4xx_or_ok(r, {200, 202, 409})

    async def burst(self) -> None:
        """Concurrent commands on distinct orders (the fan-out then sees several changes in
        one loop iteration). The choices are drawn before anything is sent."""
        recent = self.w.orders[-10:]
        refs = self.rng.sample(recent, min(len(recent), self.rng.randint(2, 5)))
        kinds = [
            self.transition,
            self.transition,
            self.confirmation,
            self.note_,
            self.notification,
            self.cancellation,
        ]
        picked = [self.rng.choice(kinds) for _ in refs]
        self.w.note(
            f"burst of {len(refs)}: "
            + ", ".join(f"{k.__name__} #{r.idx}" for k, r in zip(picked, refs, strict=True))
        )
        await asyncio.gather(*(k(r) for k, r in zip(picked, refs, strict=True)))

    async def patch_venue(self) -> None:
        key = self.rng.choice(["L1", "L4"])
        n = self.w.venue_patches.get(key, 0) + 1
        self.w.venue_patches[key] = n
        await self.admin(
            "PATCH", f"/v1/locations/{self.w.locs[key].id}", {"settings": {"conformance_rev": n}}
        )
        self.w.note(f"PATCH {key} settings rev {n}")

    async def churn(self, sub: PusherSub | StompSub | None = None) -> None:
        """Disconnect a subscriber, or resume one that was disconnected."""
        w, rng = self.w, self.rng
        if sub is None:
            subs: list[PusherSub | StompSub] = [*w.pusher.values(), *w.stomp.values()]
            subs = [s for s in subs if not s.name.startswith("venue-")]
            sub = rng.choice(sorted(subs, key=lambda s: s.name))
        if sub.connected:
            await sub.disconnect()
            w.note(f"disconnect {sub.name}")
            return
        if isinstance(sub, PusherSub):
            await sub.connect(w.floor)
            # Pusher resume: the order's events after the last one seen, over REST.
            if sub.channel.startswith("private-o-"):
                order_id = sub.channel.removeprefix("private-o-")
                after = sub.last_seen(order_id)
                headers = {"Authorization": f"Bearer {sub.token}"} if sub.token else None
                auth = None if sub.token else (sub.key, sub.secret or "")
                r = await w.read_http.get(
                    f"/v1/orders/{order_id}/events", params={"after_seq": after},
                    headers=headers, auth=auth,
                )  # fmt: skip
                if r.status_code != 200:
                    w.violations.append(f"{sub.name}: GET events {r.status_code} {r.text[:200]}")
                else:
                    seen = sub.rest_seen.setdefault(order_id, set())
                    seen.update(int(e["seq"]) for e in r.json()["events"])
                w.note(f"resume {sub.name} + GET events after_seq={after}")
            else:
                w.note(f"resume {sub.name}")
            return
        if sub.order_id is not None:
            since = sub.last_seen(sub.order_id)
            await sub.connect(w.floor, since=since)
            w.note(f"resume {sub.name} x-since-seq={since}")
        else:
            # A restarting display asks for the board first (x-snapshot, API.md "STOMP
            # extras"): the venue's KDS stream and the user's order stream offer it.
            snapshot = sub.name.startswith(("kds-L", "user-orders-")) and rng.random() < 0.7
            await sub.connect(w.floor, snapshot=snapshot)
            w.note(f"resume {sub.name} snapshot={snapshot}")

    async def flaky(self) -> None:
        """A webhook receiver answers 500 for the next few steps, then 200 again (well
        inside the retry schedule, so nothing is dead-lettered)."""
        names = sorted(n for n, h in self.w.hooks.items() if n != "posL3-rbi-fifo" and not h.down)
        if not names:
            return
        hook = self.w.hooks[self.rng.choice(names)]
        hook.down = True
        self.up_at[hook.name] = self.step + self.rng.randint(3, 15)
        self.w.note(f"receiver {hook.name} down (500) until step {self.up_at[hook.name]}")

    def back_up(self) -> None:
        for name, at in sorted(self.up_at.items()):
            if at <= self.step:
                self.w.hooks[name].down = False
                del self.up_at[name]
                self.w.note(f"receiver {name} up")

    async def forbidden(self) -> None:
        """Subscriptions that must be refused: another user's order, another tenant."""
        w, rng = self.w, self.rng
        theirs = [o for o in w.orders if o.user not in (None, "u1") and o.loc.tenant == "T1"]
        if not theirs:
            return
        ref = rng.choice(theirs)
        ws, base = w.cluster.reader.ws, w.cluster.reader.base
        if rng.random() < 0.5:
            sub = PusherSub(
                "forbidden", ws, base, ref.app.app_key, f"private-o-{ref.id}", token=w.tokens["u1"]
            )
        else:
            kds2 = w.apps["kds2"]
            sub = PusherSub(
                "forbidden", ws, base, kds2.app_key, f"private-o-{ref.id}", secret=kds2.secret
            )
        try:
            await sub.connect()
        except AssertionError as exc:
            if "pusher auth 40" not in str(exc):
                w.violations.append(f"forbidden Pusher subscription failed oddly: {exc}")
        else:
            w.violations.append(f"{sub.channel} was authorized for a stranger ({sub.key})")
            await sub.disconnect()
        t1 = w.locs["L1"].tenant_id
        for login, passcode, dest in (
            (w.tokens["u1"], None, f"/order-changes/{ref.user}/{ref.id}"),
            (w.tokens["u1"], None, f"/order-changes/u1/{ref.id}"),
            (w.apps["kds2"].app_key, w.apps["kds2"].secret, f"/kds/{t1}/{ref.loc.id}"),
        ):
            ssub = StompSub("forbidden", ws, dest, login=login, passcode=passcode)
            try:
                await ssub.connect()
            except AssertionError as exc:
                if "SUBSCRIBE refused" not in str(exc):
                    w.violations.append(f"forbidden STOMP subscription failed oddly: {exc}")
            else:
                w.violations.append(f"STOMP {dest} was allowed for a stranger")
            await ssub.disconnect()
        w.note(f"forbidden subscriptions to #{ref.idx} refused")

    # -- the run --------------------------------------------------------------------------

    async def run(self, min_orders: int = 24) -> None:
        commands = [
            (self.transition, 30),
            (self.burst, 6),
            (self.confirmation, 8),
            (self.notification, 5),
            (self.note_, 5),
            (self.cancellation, 4),
            (self.courier, 14),
            (self.doshii_subscribe, 3),
            (self.fire, 2),
            (self.patch_venue, 1),
            (self.churn, 7),
            (self.flaky, 3),
            (self.forbidden, 1),
        ]
        funcs = [c for c, _ in commands]
        weights = [wt for _, wt in commands]
        for step in range(self.steps):
            self.step = step
            self.back_up()
            need = min_orders - len(self.w.orders)
            remaining = self.steps - step
            if not self.w.orders or (need > 0 and self.rng.random() < max(0.15, need / remaining)):
                await self.create_order()
                continue
            await self.rng.choices(funcs, weights)[0]()
        self.step = self.steps + 100
        self.back_up()
        # The end: every subscriber online again, resumed the way a client would.
        for sub in sorted([*self.w.pusher.values(), *self.w.stomp.values()], key=lambda s: s.name):
            if not sub.connected:
                await self.churn(sub)


def write_log(world: World, path: Path) -> None:
    path.write_text("\n".join(world.log) + "\n")


async def settle(world: World, limit: float = 20.0) -> dict[str, int]:
    """Wait until no order changes any more (POS callbacks, timers): versions stable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last = await world.floor()
    stable_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        now = await world.floor()
        if now != last:
            last, stable_since = now, loop.time()
        elif loop.time() - stable_since >= 1.0:
            break
    return last
