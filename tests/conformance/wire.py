"""The subscribers of the conformance suite, speaking the real wire protocols on loopback.

* :class:`PusherSub`: a Pusher-protocol WebSocket client (``/app/{key}``), authorized through
  the Open Dining auth endpoint with a customer access token or with the app key + secret.
* :class:`StompSub`: STOMP 1.2 over WebSocket (``/ws``), login with an access token or an
  app key + secret; ``x-since-seq`` and ``x-snapshot`` on resume.
* :class:`HookReceiver`: an aiohttp server that verifies every Standard Webhooks signature
  and can answer 500 for a while ("down"), then 200 again.
* :class:`LoopbackPos`: an ``rbi`` receiver that also answers PRICE/COMMIT/FIRE_ORDER on
  their callback URLs, as the POS app.

Every subscriber keeps its connection *sessions*; each session records what arrived, in
arrival order, with the order versions known right after the subscription was confirmed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import websockets
from aiohttp import web
from standardwebhooks import Webhook

from support.stomp import frame as stomp_frame
from support.stomp import parse as stomp_parse

Floor = Callable[[], Awaitable[dict[str, int]]]


async def no_floor() -> dict[str, int]:
    return {}


@dataclass
class Msg:
    """One order message as received: order id, seq, and the name that identifies it."""

    order_id: str
    seq: int
    name: str
    marker: bool = False  # a state message (Pusher last state, STOMP snapshot), not a change


@dataclass
class Session:
    floor: dict[str, int] = field(default_factory=dict)  # order -> version known at subscribe
    since: dict[str, int] = field(default_factory=dict)  # x-since-seq asked for, per order
    snapshot: bool = False
    msgs: list[Msg] = field(default_factory=list)
    other: list[Any] = field(default_factory=list)  # non-order messages (venue changes)
    errors: list[str] = field(default_factory=list)
    final: bool = False  # still connected when the run ended


# -- Pusher -------------------------------------------------------------------------------


class PusherSub:
    """One Pusher connection subscribed to one channel, reconnecting on demand."""

    def __init__(
        self,
        name: str,
        ws_base: str,
        http_base: str,
        key: str,
        channel: str,
        *,
        secret: str | None = None,
        token: str | None = None,
    ) -> None:
        self.name = name
        self.ws_base = ws_base
        self.http_base = http_base
        self.key = key
        self.channel = channel
        self.secret = secret
        self.token = token
        self.sessions: list[Session] = []
        self.rest_seen: dict[str, set[int]] = {}  # seqs fetched by GET /events?after_seq=
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self, floor: Floor = no_floor) -> None:
        url = f"{self.ws_base}/app/{self.key}?protocol=7&client=conformance&version=1.0"
        ws = await websockets.connect(url, open_timeout=10, ping_interval=None, max_queue=None)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["event"] == "pusher:connection_established", hello
        socket_id = json.loads(hello["data"])["socket_id"]
        params = {"key": self.key, "socket_id": socket_id, "channel_name": self.channel}
        if self.secret is not None:
            params["secret"] = self.secret
        else:
            assert self.token is not None
            params["access_token"] = self.token
        async with httpx.AsyncClient(base_url=self.http_base, timeout=10) as http:
            r = await http.post("/api/v1/pusher/auth", data=params)
        assert r.status_code == 200, f"{self.name}: pusher auth {r.status_code} {r.text}"
        auth = r.json()
        data: dict[str, Any] = {"channel": self.channel, "auth": auth["auth"]}
        if "channel_data" in auth:
            data["channel_data"] = auth["channel_data"]
        session = Session()
        self.sessions.append(session)
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        while True:
            raw = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if raw.get("event") == "pusher_internal:subscription_succeeded":
                break
            if raw.get("event") == "pusher:error":
                raise AssertionError(f"{self.name}: subscribe refused: {raw}")
            self._record(session, raw)
        # Orders' versions read after the subscription was confirmed: every event after
        # them must arrive.
        session.floor = await floor()
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws, session))

    def _record(self, session: Session, raw: dict[str, Any]) -> None:
        event = raw.get("event", "")
        if event.startswith("pusher"):
            if event == "pusher:error":
                session.errors.append(json.dumps(raw))
            return
        if raw.get("channel") != self.channel:
            session.errors.append(f"message on {raw.get('channel')} {raw}")
            return
        data = json.loads(raw["data"]) if isinstance(raw.get("data"), str) else raw.get("data")
        if not isinstance(data, dict) or "seq" not in data:
            session.errors.append(f"message without seq: {raw}")
            return
        session.msgs.append(Msg(str(data.get("order_id")), int(data["seq"]), event))

    async def _read(self, ws: Any, session: Session) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                raw = json.loads(text)
                if raw.get("event") == "pusher:ping":
                    await ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
                    continue
                self._record(session, raw)
        if self._ws is ws:  # closed by the server
            session.errors.append(f"server closed the connection: {ws.close_code}")
            self._ws = None

    async def disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None

    def last_seen(self, order_id: str) -> int:
        seen = [m.seq for s in self.sessions for m in s.msgs if m.order_id == order_id]
        seen += list(self.rest_seen.get(order_id, ()))
        return max(seen, default=0)


# -- STOMP --------------------------------------------------------------------------------


class StompSub:
    """One STOMP connection with one subscription, reconnecting on demand."""

    def __init__(
        self,
        name: str,
        ws_base: str,
        destination: str,
        *,
        login: str,
        passcode: str | None = None,
        order_id: str | None = None,
    ) -> None:
        self.name = name
        self.ws_base = ws_base
        self.destination = destination
        self.login = login
        self.passcode = passcode
        self.order_id = order_id  # for /order-changes/{user}/{order}
        self.sessions: list[Session] = []
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._sub = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(
        self, floor: Floor = no_floor, *, since: int | None = None, snapshot: bool = False
    ) -> None:
        ws = await websockets.connect(
            f"{self.ws_base}/ws",
            subprotocols=["v12.stomp"],  # type: ignore[list-item]
            open_timeout=10,
            ping_interval=None,
            max_queue=None,
        )
        headers = {"accept-version": "1.2", "heart-beat": "0,0", "login": self.login}
        if self.passcode is not None:
            headers["passcode"] = self.passcode
        await ws.send(stomp_frame("CONNECT", headers))
        connected = await self._next(ws)
        assert connected.command == "CONNECTED", f"{self.name}: {connected}"
        self._sub += 1
        sub_id = f"sub-{self._sub}"
        extra: dict[str, str] = {}
        session = Session(snapshot=snapshot)
        if since is not None:
            extra["x-since-seq"] = str(since)
            assert self.order_id is not None
            session.since[self.order_id] = since
        if snapshot:
            extra["x-snapshot"] = "true"
        self.sessions.append(session)
        await ws.send(
            stomp_frame(
                "SUBSCRIBE",
                {"id": sub_id, "destination": self.destination, "receipt": f"r-{sub_id}", **extra},
            )
        )
        while True:
            got = await self._next(ws)
            if got.command == "RECEIPT":
                break
            if got.command == "ERROR":
                raise AssertionError(f"{self.name}: SUBSCRIBE refused: {got.headers} {got.text}")
            self._record(session, got)
        session.floor = await floor()
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws, session))

    @staticmethod
    async def _next(ws: Any) -> Any:
        while True:
            data = await asyncio.wait_for(ws.recv(), 10)
            parsed = stomp_parse(data.encode() if isinstance(data, str) else data)
            if parsed is not None:
                return parsed

    def _record(self, session: Session, got: Any) -> None:
        if got.command != "MESSAGE":
            session.errors.append(f"{got.command} {got.headers} {got.text[:300]}")
            return
        if got.headers.get("destination") != self.destination:
            session.errors.append(f"MESSAGE for {got.headers.get('destination')}")
            return
        if "seq" not in got.headers:
            session.other.append(json.loads(got.body))
            return
        marker = got.headers.get("x-snapshot") == "true"
        session.msgs.append(
            Msg(
                got.headers["order-id"],
                int(got.headers["seq"]),
                got.headers.get("event-type", ""),
                marker,
            )
        )

    async def _read(self, ws: Any, session: Session) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in ws:
                parsed = stomp_parse(data.encode() if isinstance(data, str) else data)
                if parsed is not None:
                    self._record(session, parsed)
        if self._ws is ws:
            session.errors.append(f"server closed the connection: {ws.close_code}")
            self._ws = None

    async def disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.send(stomp_frame("DISCONNECT", {}))
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None

    def last_seen(self, order_id: str) -> int:
        return max(
            (m.seq for s in self.sessions for m in s.msgs if m.order_id == order_id), default=0
        )


# -- webhooks -----------------------------------------------------------------------------


@dataclass
class Delivery:
    webhook_id: str
    body: dict[str, Any]
    raw: bytes


class HookReceiver:
    """A webhook receiver on loopback. Every request must verify; only 2xx-answered ones
    count as delivered (in the order they were accepted)."""

    def __init__(self, name: str, dialect: str, fifo: bool, app_kind: str) -> None:
        self.name = name
        self.dialect = dialect
        self.fifo = fifo
        self.app_kind = app_kind
        self.port = 0  # bound at start
        self.secret = ""
        self.down = False
        self.accepted: list[Delivery] = []
        self.refused = 0
        self.bad: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(raw, headers)
        except Exception as exc:
            self.bad.append(f"signature: {exc!r} {headers.get('webhook-id')}")
            return web.json_response({"error": "bad signature"}, status=400)
        if self.down:
            self.refused += 1
            return web.json_response({"error": "down for a while"}, status=500)
        self.accepted.append(Delivery(headers["webhook-id"], json.loads(raw), raw))
        return await self.after_accept(self.accepted[-1])

    async def after_accept(self, delivery: Delivery) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        # Only its own URL: stray requests from other test runs on the machine that hit a
        # recycled port (a health poll, say) get a 404 and are not deliveries.
        app.router.add_post(f"/{self.name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bound here, on a port the kernel picks: no window for another run to take it.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class LoopbackPos(HookReceiver):
    """The POS of the POS-flow location: answers every PRICE/COMMIT/FIRE_ORDER it accepts by
    calling back as the POS app (PRICED with a total, COMMITTED, PREPARING)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "rbi", True, "pos")
        self.key = ""
        self.app_secret = ""
        self.callbacks: list[tuple[str, int]] = []
        self.answered: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def after_accept(self, delivery: Delivery) -> web.StreamResponse:
        body = delivery.body
        kind = {"PRICE_ORDER": "price", "COMMIT_ORDER": "commit", "FIRE_ORDER": "fire"}.get(
            body.get("eventType", "")
        )
        if kind is not None and delivery.webhook_id not in self.answered:
            self.answered.add(delivery.webhook_id)
            task = asyncio.create_task(self._call_back(body["callbackUrl"], kind))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"received": True})

    async def _call_back(self, url: str, kind: str) -> None:
        payload: dict[str, Any] = {
            "price": {"status": "PRICED", "total": 1234},
            "commit": {"status": "COMMITTED"},
            "fire": {"status": "PREPARING"},
        }[kind]
        token = base64.b64encode(f"{self.key}:{self.app_secret}".encode()).decode()
        assert self._session is not None
        async with self._session.post(
            url, json=payload, headers={"Authorization": f"Basic {token}"}
        ) as response:
            self.callbacks.append((url, response.status))

    async def start(self) -> None:
        await super().start()
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await super().stop()
