"""Benchmark: the first load of every devnet pool behind a proxy enforcing provider limits;
prints JSON.

Starts a devnet with ``--extra-tokens`` extra tokens, discovers its pools, and loads them twice,
each time through a fresh local proxy enforcing the issue's limits (1,000 calls per batch, 5 MB
per request, 25 requests/s with HTTP 429 beyond) and a client configured with them: the
baseline is the first load as a refresh did it (inline, every tickBitmap word of every V3 pool:
6,932 for a fee-100 pool); the other is the background loader (``load_pending``) reading the
words within ``--window-pct`` of each price. Reported: HTTP requests, seconds, the tickBitmap
and ``ticks()`` reads per V3 pool (from the loaded ranges), and pools left stale or loading.

Usage: .venv/bin/python scripts/bench_first_load.py [--extra-tokens 12] [--window-pct 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.chain.limits import ProviderLimits
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.dex.pools import PoolRegistry, tick_bitmap_word_range
from agent.dex.v3 import V3Pool
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

LIMITS = ProviderLimits(max_calls_per_batch=1_000, max_request_bytes=5_000_000, requests_per_s=25)
ENFORCED = EnforcedLimits(max_batch_calls=1_000, max_body_bytes=5_000_000, requests_per_s=25)


def _words(pool: V3Pool) -> int:
    if pool.loaded_tick_range is None:
        return len(tick_bitmap_word_range(pool.tick_spacing))
    lowest, highest = pool.loaded_tick_range
    return (highest // pool.tick_spacing >> 8) - (lowest // pool.tick_spacing >> 8) + 1


async def first_load(devnet: Devnet, window_pct: float | None) -> dict[str, Any]:
    a = devnet.addresses
    async with (
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=ENFORCED) as proxy,
        RpcClient([proxy.url], limits=LIMITS) as client,
    ):
        registry = PoolRegistry(
            client,
            v2_factories={
                "uniswap_v2": a["uniswap_v2.factory"],
                "sushiswap": a["sushiswap.factory"],
            },
            v3_factory=a["uniswap_v3.factory"],
            limits=LIMITS,
            event_driven=True,
            tick_window_pct=window_pct,
            background_load=window_pct is not None,
        )
        await registry.discover(t.address for t in devnet.tokens.values())
        requests, started = client.request_count, time.perf_counter()
        await registry.refresh(int(await client.call_raw("eth_blockNumber"), 16))
        if window_pct is not None:
            await registry.load_pending(forever=False)
        seconds = time.perf_counter() - started
        v3 = [p for p in registry.pools.values() if isinstance(p, V3Pool)]
        return {
            "pools": len(registry.pool_refs),
            "v3_pools": len(v3),
            "http_requests": client.request_count - requests,
            "seconds": round(seconds, 3),
            "tick_bitmap_reads_per_v3_pool": round(sum(map(_words, v3)) / max(len(v3), 1), 1),
            "ticks_reads_per_v3_pool": round(sum(len(p.ticks) for p in v3) / max(len(v3), 1), 1),
            "refused_429": proxy.refused["rate"],
            "stale": len(registry.stale_pools),
            "loading": len(registry.loading_pools),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra-tokens", type=int, default=12)
    parser.add_argument("--window-pct", type=float, default=10.0)
    args = parser.parse_args()
    async with Devnet(extra_tokens=args.extra_tokens) as devnet:
        baseline = await first_load(devnet, None)
        windowed = await first_load(devnet, args.window_pct)
    print(
        json.dumps(
            {
                "baseline_every_word_inline": baseline,
                "windowed_background": windowed,
                "requests_ratio": round(baseline["http_requests"] / windowed["http_requests"], 2),
                "seconds_ratio": round(baseline["seconds"] / windowed["seconds"], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
