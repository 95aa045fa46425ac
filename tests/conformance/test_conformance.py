"""The model-based delivery suite (issue 11): random interleaved commands through the REST
API of live ``ordercast run`` nodes, subscribers on every transport and destination kind
that disconnect and resume at random, and an oracle built from the event log read back over
REST plus the documented routing rules (:mod:`conformance.routing`).

``make test`` runs a fixed set of seeds on each configuration; ``make soak SEEDS=1,2
MINUTES=10`` runs more. A failure prints its seed and a one-line reproduction command.
Env: ``CONFORMANCE_SEED`` / ``CONFORMANCE_SEEDS`` (comma-separated) replace the default
seeds, ``CONFORMANCE_STEPS`` the number of commands per seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .model import Driver, World, settle, write_log
from .nodes import CONFIGS, cluster
from .oracle import check_all, coverage, read_logs

DEFAULT_SEEDS = {"sqlite": [11, 12], "postgres": [21], "two-nodes": [31]}
STEPS = int(os.environ.get("CONFORMANCE_STEPS", "180"))


def seeds_for(config: str) -> list[int]:
    given = os.environ.get("CONFORMANCE_SEEDS") or os.environ.get("CONFORMANCE_SEED")
    if given:
        return [int(s) for s in given.split(",") if s.strip()]
    return DEFAULT_SEEDS[config]


CASES = [pytest.param(c, s, id=f"{c}-seed{s}") for c in CONFIGS for s in seeds_for(c)]


def reproduce(config: str, seed: int) -> str:
    return (
        f"CONFORMANCE_SEED={seed} CONFORMANCE_STEPS={STEPS} "
        f".venv/bin/pytest tests/conformance/test_conformance.py -k '{config}-seed{seed}'"
    )


async def run_seed(config: str, seed: int, tmp: Path, steps: int = STEPS) -> list[str]:
    """One seeded run; the violations found (empty: conformant)."""
    async with (
        cluster(config, tmp) as nodes,
        httpx.AsyncClient(base_url=nodes.writer.base, timeout=15) as http,
        httpx.AsyncClient(base_url=nodes.reader.base, timeout=15) as read_http,
    ):
        world = World(http, read_http, nodes)
        driver = Driver(world, seed, steps)
        try:
            await driver.setup()
            await driver.run()
            await settle(world)
            subs = [*world.pusher.values(), *world.stomp.values()]
            for sub in subs:
                if sub.connected and sub.sessions:
                    sub.sessions[-1].final = True
            # Deliveries drain (webhook retries, fan-out): poll the oracle until it is
            # satisfied, or nothing new has arrived for a while, or the deadline.
            deadline = time.monotonic() + 30
            progress, still_since = -1, time.monotonic()
            while True:
                logs = await read_logs(world)
                bad = check_all(world, logs)
                now = time.monotonic()
                seen = received_count(world)
                if seen != progress:
                    progress, still_since = seen, now
                if not bad or now > deadline or now - still_since > 4:
                    break
                await asyncio.sleep(0.5)
            stats, thin = coverage(world, logs)
            world.note("coverage: " + json.dumps(stats))
            print(f"{config} seed {seed}: {json.dumps(stats)}")
            return bad + thin
        finally:
            write_log(world, tmp / "commands.log")
            for sub in [*world.pusher.values(), *world.stomp.values()]:
                await sub.disconnect()
            for hook in world.hooks.values():
                await hook.stop()


def received_count(world: World) -> int:
    subs = [*world.pusher.values(), *world.stomp.values()]
    stream = sum(len(s.msgs) + len(s.other) for sub in subs for s in sub.sessions)
    return stream + sum(len(h.accepted) + h.refused for h in world.hooks.values())


def workdir(config: str, seed: int) -> Path:
    """Where a run keeps its database, node logs, command log and violations: outside
    pytest's tmp_path (which other pytest runs on the machine prune), removed on success."""
    root = Path(
        os.environ.get(
            "CONFORMANCE_ARTIFACTS", Path(tempfile.gettempdir()) / "ordercast-conformance"
        )
    )
    path = root / f"{config}-seed{seed}-{time.strftime('%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(config: str, seed: int, bad: list[str], tmp: Path) -> str:
    (tmp / "violations.txt").write_text("\n".join(bad) + "\n")
    lines = [
        f"conformance: {len(bad)} violation(s), config={config} seed={seed} steps={STEPS}",
        f"reproduce: {reproduce(config, seed)}",
        f"all violations, command log and node logs: {tmp}",
        *[f"  - {b[:1500]}" for b in bad[:25]],
    ]
    if len(bad) > 25:
        lines.append(f"  ... and {len(bad) - 25} more")
    return "\n".join(lines)


@pytest.mark.services
@pytest.mark.timeout(300)  # one seed: ~20-60 s, more on a loaded box
@pytest.mark.parametrize(("config", "seed"), CASES)
async def test_every_subscriber_gets_every_event(config: str, seed: int) -> None:
    tmp = workdir(config, seed)
    bad = await run_seed(config, seed, tmp)
    if bad:
        pytest.fail(report(config, seed, bad, tmp), pytrace=False)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(
    not os.environ.get("CONFORMANCE_SOAK_MINUTES"), reason="make soak SEEDS=... MINUTES=..."
)
@pytest.mark.timeout(0)  # bounded by MINUTES (plus the last seed) instead
@pytest.mark.parametrize("config", CONFIGS)
async def test_soak(config: str) -> None:
    """Seed after seed (SEEDS first, then the following integers) until MINUTES run out."""
    minutes = float(os.environ["CONFORMANCE_SOAK_MINUTES"]) / len(CONFIGS)
    given = [int(s) for s in os.environ.get("CONFORMANCE_SEEDS", "").split(",") if s.strip()]
    seed = given[0] if given else int(time.time()) % 100_000
    queue = list(given)
    end = time.monotonic() + minutes * 60
    runs = 0
    while time.monotonic() < end or runs == 0:
        seed = queue.pop(0) if queue else seed + 1
        tmp = workdir(config, seed)
        bad = await run_seed(config, seed, tmp)
        runs += 1
        if bad:
            pytest.fail(report(config, seed, bad, tmp), pytrace=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"soak {config}: {runs} seeds conformant (last {seed})")
