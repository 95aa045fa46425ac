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
import os
import time
from pathlib import Path

import httpx
import pytest

from .model import Driver, World, settle, write_log
from .nodes import CONFIGS, cluster
from .oracle import check_all, read_logs

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
    async with cluster(config, tmp) as nodes:
        async with (
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
                # Deliveries drain (webhook retries, fan-out): poll the oracle, bounded.
                deadline = time.monotonic() + 30
                while True:
                    logs = await read_logs(world)
                    bad = check_all(world, logs)
                    if not bad or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                return bad
            finally:
                write_log(world, tmp / "commands.log")
                for sub in [*world.pusher.values(), *world.stomp.values()]:
                    await sub.disconnect()
                for hook in world.hooks.values():
                    await hook.stop()


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
@pytest.mark.parametrize(("config", "seed"), CASES)
async def test_every_subscriber_gets_every_event(config: str, seed: int, tmp_path: Path) -> None:
    bad = await run_seed(config, seed, tmp_path)
    if bad:
        pytest.fail(report(config, seed, bad, tmp_path), pytrace=False)


@pytest.mark.skipif(
    not os.environ.get("CONFORMANCE_SOAK_MINUTES"), reason="make soak SEEDS=... MINUTES=..."
)
@pytest.mark.parametrize("config", CONFIGS)
async def test_soak(config: str, tmp_path: Path) -> None:
    """Seed after seed (SEEDS first, then the following integers) until MINUTES run out."""
    minutes = float(os.environ["CONFORMANCE_SOAK_MINUTES"]) / len(CONFIGS)
    given = [int(s) for s in os.environ.get("CONFORMANCE_SEEDS", "").split(",") if s.strip()]
    seed = given[0] if given else int(time.time()) % 100_000
    queue = list(given)
    end = time.monotonic() + minutes * 60
    runs = 0
    while time.monotonic() < end or runs == 0:
        seed = queue.pop(0) if queue else seed + 1
        tmp = tmp_path / f"seed{seed}"
        tmp.mkdir()
        bad = await run_seed(config, seed, tmp)
        runs += 1
        if bad:
            pytest.fail(report(config, seed, bad, tmp), pytrace=False)
    print(f"soak {config}: {runs} seeds conformant (last {seed})")
