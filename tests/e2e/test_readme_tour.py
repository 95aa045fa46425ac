"""The README's five-minute tour, run as written against a live `ordercast run`.

Every ```bash block of the "Five-minute tour" section runs, in order, in one shell with
`set -euo pipefail`, so the README cannot rot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.net import free_port
from support.paths import NODE_DIR, ROOT


def tour_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 8, "the tour lost its commands"
    return "set -euo pipefail\n" + "\n".join(blocks)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "ORDERCAST_DATABASE_URL": f"sqlite:///{tmp_path}/tour.db",
        "ORDERCAST_HTTP_PORT": str(free_port()),
        "ORDERCAST_WS_PORT": str(free_port()),
    }
    env.pop("ORDERCAST_ADMIN_TOKEN", None)
    exe = Path(sys.executable).parent / "ordercast"
    proc = subprocess.Popen(
        [str(exe), "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{env['ORDERCAST_HTTP_PORT']}/health"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"ordercast run did not start:\n{out}")
            time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.skipif(shutil.which("jq") is None, reason="the README tour uses jq")
def test_readme_tour_runs_as_written(server: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", "-c", tour_script()],
        env=server,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"status":"ready"' in out
    assert '"applied":false,"outcome":"stale"' in out
    assert '"order":"handed_off"' in out
    assert '"order":"completed"' in out
    assert '"code":"invalid_transition"' in out
    assert '"kind":"pos"' in out
    assert "order ord_" in out


EXAMPLES = NODE_DIR / "examples"


def test_readme_shows_the_example_clients_verbatim() -> None:
    text = (ROOT / "README.md").read_text()
    for name in ("follow_order.mjs", "kds.mjs"):
        assert (EXAMPLES / name).read_text() in text, f"README's copy of {name} drifted"


def _demo_env(server: dict[str, str]) -> dict[str, str]:
    exe = Path(sys.executable).parent / "ordercast"
    out = subprocess.run(
        [str(exe), "demo", "--env"], env=server, capture_output=True, text=True, check=True
    ).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return {**server, **exports}


class LineReader:
    """Collects a subprocess's stdout lines on a thread, so waits never block on a pipe."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import queue
        import threading

        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line.rstrip("\n"))

        self._stream = stream
        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: the pump has read to the end; close the pipe."""
        self._thread.join(timeout=10)
        self._stream.close()

    def wait_for(self, wanted: list[str], timeout: float) -> list[str]:
        """Lines so far, once each wanted fragment was seen (bounded in time)."""
        import queue

        deadline = time.monotonic() + timeout
        while not all(any(w in line for line in self.seen) for w in wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                break
        return self.seen


@pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
    reason="needs node and tests/node/node_modules (make test installs them)",
)
def test_readme_example_clients_receive_order_changes(server: dict[str, str]) -> None:
    env = _demo_env(server)
    auth = (env["OC_KEY"], env["OC_SECRET"])
    base = env["OC_URL"]
    order = httpx.post(
        f"{base}/v1/orders",
        auth=auth,
        json={
            "location_id": env["OC_LOCATION"],
            "user_id": "customer-1",
            "items": [{"name": "Burger", "quantity": 1, "unit_price": 899}],
        },
    ).json()
    token = httpx.post(f"{base}/v1/users/customer-1/tokens", auth=auth).json()["access_token"]
    procs = [
        subprocess.Popen(
            ["node", str(EXAMPLES / name)],
            env={**env, "ORDER": order["id"], "TOKEN": token},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("follow_order.mjs", "kds.mjs")
    ]
    readers = [LineReader(proc) for proc in procs]
    try:
        for reader in readers:
            assert "subscribed" in reader.wait_for(["subscribed"], 20)
        for to in ("accepted", "preparing"):
            r = httpx.post(
                f"{base}/v1/orders/{order['id']}/transitions", auth=auth, json={"to": to}
            )
            assert r.status_code == 200, r.text
        follow = readers[0].wait_for(["order_confirmation", "order_tracker"], 20)
        kds = readers[1].wait_for(["order.accepted", "order.preparing"], 20)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        for reader in readers:
            reader.close()
    confirmation = next(line for line in follow if line.startswith("order_confirmation"))
    assert '"confirmation":1' in confirmation and f'"order_id":"{order["id"]}"' in confirmation
    assert any(line.startswith("order_tracker") and '"seq":3' in line for line in follow)
    assert any(line.startswith("order.preparing " + order["id"]) for line in kds)
