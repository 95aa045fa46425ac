"""A live ordercast (HTTP API on uvicorn + the picows gateway) on free loopback ports, in the
test's event loop, plus a tenant, location, staff app (client events on) and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from ordercast.app import create_app
from ordercast.runtime import Runtime
from support.paths import NODE_DIR


def need_node() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (make test installs the Node clients)")
    if not (NODE_DIR / "node_modules" / "pusher-js").is_dir():
        pytest.skip("tests/node/node_modules is missing: run `cd tests/node && npm install`")


@dataclass
class Live:
    runtime: Runtime
    http: httpx.AsyncClient
    base_url: str
    http_port: int
    ws_port: int
    tenant_id: str
    location_id: str
    app: dict[str, Any]  # id, key, secret

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.runtime.admin_token}"}

    @property
    def auth(self) -> tuple[str, str]:
        return (self.app["key"], self.app["secret"])

    async def order(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "location_id": self.location_id,
            "type": "delivery",
            "items": [
                {
                    "pos_id": "burger",
                    "name": "Cheeseburger",
                    "quantity": 1,
                    "unit_price": 899,
                    "options": [{"name": "Bacon", "variants": [{"name": "Bacon", "price": 150}]}],
                },
                {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350},
            ],
            "consumer": {"name": "Ada", "phone": "+15550100"},
        }
        body.update(overrides)
        r = await self.http.post("/v1/orders", auth=self.auth, json=body)
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        return order

    async def token(self, user_id: str) -> str:
        r = await self.http.post(f"/v1/users/{user_id}/tokens", auth=self.auth, json={})
        assert r.status_code in (200, 201), r.text
        token: str = r.json()["access_token"]
        return token

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(path, auth=self.auth, json=body)
        assert r.status_code in (200, 201), r.text
        out: dict[str, Any] = r.json()
        return out


@contextlib.asynccontextmanager
async def serve_http(runtime: Runtime) -> AsyncIterator[int]:
    """The runtime's HTTP app under uvicorn on a free loopback port (yielded), for what the
    in-process transport cannot do (a response that never ends, a real client)."""
    config = uvicorn.Config(
        create_app(runtime), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def start_live(
    runtime: Runtime, location_settings: dict[str, Any] | None = None
) -> AsyncIterator[Live]:
    async with serve_http(runtime) as http_port:
        await runtime.gateway.start(host="127.0.0.1", port=0)
        base = f"http://127.0.0.1:{http_port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                admin = {"Authorization": f"Bearer {runtime.admin_token}"}
                tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "T"})).json()
                location = (
                    await http.post(
                        "/v1/locations",
                        headers=admin,
                        json={
                            "tenant_id": tenant["id"],
                            "name": "L",
                            "timezone": "America/New_York",
                            "settings": location_settings or {},
                        },
                    )
                ).json()
                created = await runtime.directory.create_app(
                    tenant_id=tenant["id"],
                    name="Ordering app",
                    kind="channel",
                    location_ids=[location["id"]],
                    settings={"client_events": True},
                )
                app_info = {"id": created.app.id, "key": created.app.key, "secret": created.secret}
                yield Live(
                    runtime,
                    http,
                    base,
                    http_port,
                    runtime.gateway.bound_port,
                    tenant["id"],
                    location["id"],
                    app_info,
                )
        finally:
            await runtime.gateway.stop()


class NodeClient:
    """A Node script speaking JSON lines: we read its events, and may write commands."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, script: str, config: dict[str, Any]) -> NodeClient:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / script),
            json.dumps(config),
            cwd=str(NODE_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def next(self, within: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            err = b""
            if self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            raise AssertionError(f"node client exited: {err.decode()[-2000:]}")
        msg: dict[str, Any] = json.loads(line)
        self.seen.append(msg)
        return msg

    async def wait_for(self, within: float = 15, **match: Any) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            while True:
                msg = await self.next(within)
                if all(msg.get(k) == v for k, v in match.items()):
                    return msg

        try:
            return await asyncio.wait_for(loop(), within)
        except TimeoutError:
            raise AssertionError(f"no {match} within {within} s; seen: {self.seen[-20:]}") from None

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
