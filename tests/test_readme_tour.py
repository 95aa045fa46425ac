"""The README's five-minute tour, run as written against a live `ordercast run`.

Every ```bash block of the "Five-minute tour" section runs, in order, in one shell with
`set -euo pipefail`, so the README cannot rot.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
