"""The agent as `run` builds it, with a small first-load round and a liquidity floor: at start
the floor's pools are skipped, one round of pools is loaded before the first block and the
others are loading (never stale); the engine's background job loads the rest while it ticks,
and the metrics say how far the load is."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp

from tests.e2e.harness import Chain, running_agent, wait_for, write_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_pools_load_in_the_background_and_small_ones_are_skipped(
    chain: Chain, workdir: Path
) -> None:
    port = free_port()
    tree = chain.tree(workdir)
    tree["execution"]["mode"] = "paper"
    tree["metrics"] = {"enabled": True, "port": port}
    tree["market"].update(
        {
            "first_load_batch_pools": 2,
            "first_load_concurrency": 1,
            "first_load_progress_interval_s": 0.1,
            "min_liquidity_usd": 1_000_000.0,
        }
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with (
        aiohttp.ClientSession() as http,
        running_agent(cfg, mode="paper") as run,
    ):
        registry = run.parts.registry
        skipped = registry.skipped_pools
        assert skipped, "the devnet has pools under $1M of liquidity in range"
        watched = set(registry.pool_refs)
        assert not skipped & watched
        # loaded one round before the first block; the rest load while the engine runs
        assert len(registry.pools) >= 2
        assert not registry.stale_pools
        first = await run.tick()
        await wait_for(lambda: not registry.loading_pools, timeout_s=60)
        await chain.devnet.mine(1)
        report = await run.tick()
        assert report.block > first.block
        assert set(registry.pools) == watched and not registry.stale_pools
        metrics = await scrape(http, port)
        assert metrics["defi_agent_pools_loaded"] == len(watched)
        assert metrics["defi_agent_pools_loading"] == 0
        assert metrics["defi_agent_pools_skipped_low_liquidity"] == len(skipped)
