"""Benchmark: event-driven pool state vs re-reading every pool each block, behind a proxy that
enforces provider limits; prints JSON.

Starts a devnet with ``--extra-tokens`` extra tokens (9: 240 V2 pools on two V2 DEXes + 60 V3
pools, all four fee tiers), discovers the pools, and puts two registries over the same blocks,
each behind its own local proxy enforcing the issue's provider limits (1,000 calls per batch,
5 MB per request, eth_getLogs over at most 10,000 blocks and 10,000 results, 25 requests/s with
HTTP 429 beyond): the baseline re-reads every pool per block (multicall), the other advances
pools by their logs (one eth_getLogs a block plus a rotating spot check). Every block real swaps
touch about ``--touched-pct`` percent of the pools. At the end every event-advanced pool is
compared with the re-read one (exactness) and with a fresh read.

This is the scale scenario's harness at devnet size; the 10,000-pool run needs a deployment of
that many pools (and bounded V3 first loads, issue item 3), not done here.

Usage: .venv/bin/python scripts/bench_scale.py [--blocks 40] [--extra-tokens 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.chain.limits import ProviderLimits
from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.devnet.traders import swap_on_pool
from agent.dex.pools import PoolRegistry, RefreshResult
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

CAPS = EnforcedLimits(
    max_batch_calls=1_000,
    max_body_bytes=5_000_000,
    logs_max_block_range=10_000,
    logs_max_results=10_000,
    requests_per_s=25,
)
LIMITS = ProviderLimits(
    max_calls_per_batch=1_000,
    max_request_bytes=5_000_000,
    logs_max_block_range=10_000,
    logs_max_results=10_000,
    requests_per_s=25,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def move_markets(devnet: Devnet, rng: random.Random, count: int) -> None:
    """``count`` real swaps on distinct random pools between the tokens the dev accounts hold,
    sent straight to the node."""
    assert devnet.rpc is not None
    trader = devnet.accounts[1][0]
    held = {t.address for s, t in devnet.tokens.items() if not s.startswith("ALT")}
    tradable = [p for p in devnet.pools if p.token0 in held and p.token1 in held]
    for info in rng.sample(tradable, min(count, len(tradable))):
        token_in = rng.choice([info.token0, info.token1])
        symbol = next(s for s, t in devnet.tokens.items() if t.address == token_in)
        amount = devnet.tokens[symbol].to_units(1) // rng.choice([10, 100, 1000])
        await swap_on_pool(
            devnet.rpc, devnet.addresses, info, trader=trader, token_in=token_in, amount_in=amount
        )


def summary(results: list[RefreshResult]) -> dict[str, Any]:
    requests = [float(r.http_requests or 0) for r in results]
    latencies = [r.duration_s * 1000 for r in results]
    return {
        "http_requests_per_block": {
            "median": statistics.median(requests),
            "p95": percentile(requests, 0.95),
            "max": max(requests),
        },
        "json_rpc_calls_per_block_mean": round(statistics.mean(r.rpc_calls for r in results), 1),
        "refresh_latency_ms": {
            "median": round(statistics.median(latencies), 2),
            "p95": round(percentile(latencies, 0.95), 2),
        },
        "blocks_with_stale_pools": sum(bool(r.stale) for r in results),
    }


def registry(devnet: Devnet, client: RpcClient, event_driven: bool) -> PoolRegistry:
    a = devnet.addresses
    return PoolRegistry(
        client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
        limits=LIMITS,
        event_driven=event_driven,
        spot_check_size=16,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--extra-tokens", type=int, default=9)
    parser.add_argument("--touched-pct", type=float, default=2.0)
    args = parser.parse_args()
    rng = random.Random(13)
    async with (
        Devnet(name="bench-scale", extra_tokens=args.extra_tokens, deployments_dir=None) as devnet,
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=CAPS) as reread_proxy,
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=CAPS) as events_proxy,
        RpcClient([reread_proxy.url], limits=LIMITS) as reread_client,
        RpcClient([events_proxy.url], limits=LIMITS) as events_client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        tokens = [t.address for t in devnet.tokens.values()]
        baseline = registry(devnet, reread_client, event_driven=False)
        events = registry(devnet, events_client, event_driven=True)
        await baseline.discover(tokens)
        before = events_client.request_count
        started = time.perf_counter()
        await events.discover(tokens)
        head = int(await direct.call_raw("eth_blockNumber"), 16)
        first = await events.refresh(head)
        first_load = {
            "http_requests": events_client.request_count - before,
            "seconds": round(time.perf_counter() - started, 3),
            "stale_pools": len(first.stale),
        }
        assert (await baseline.refresh(head)).ok
        pools = len(events.pool_refs)
        touched = max(1, round(pools * args.touched_pct / 100))
        reread_results: list[RefreshResult] = []
        event_results: list[RefreshResult] = []
        for _ in range(args.blocks):
            await move_markets(devnet, rng, touched)
            head = int(await direct.call_raw("eth_blockNumber"), 16)
            reread_results.append(await baseline.refresh(head))
            event_results.append(await events.refresh(head))
        differing = sum(
            events.get(address) != baseline.get(address) for address in events.pool_refs
        )
        kinds = [ref.kind for ref in events.pool_refs.values()]
        reread_reads = kinds.count("v2") + 2 * kinds.count("v3")
        spot_reads = round(reread_reads * min(16, pools) / pools, 1)  # the sample's share
        reread = summary(reread_results)
        ours = summary(event_results)
        report = {
            "pools": pools,
            "pools_touched_per_block": touched,
            "blocks": args.blocks,
            "provider_limits": {
                "calls_per_batch": 1_000,
                "bytes_per_request": 5_000_000,
                "logs_block_range": 10_000,
                "logs_results": 10_000,
                "requests_per_s": 25,
            },
            "first_load_event_registry": first_load,
            "baseline_reread_every_pool": reread,
            "event_driven": {
                **ours,
                "event_refreshes": events.event_refreshes,
                "drift_count": events.drift_count,
                "pools_differing_from_reread_at_end": differing,
                "stale_pools_at_end": len(events.stale_pools),
            },
            "provider_refusals": {
                "reread": dict(reread_proxy.refused),
                "event_driven": dict(events_proxy.refused),
            },
            # pool reads inside the multicall: every pool (V3: slot0 + liquidity) vs the sample
            "contract_reads_per_block": {"reread": reread_reads, "event_driven": spot_reads},
            "ratios": {
                "contract_reads_fewer": round(reread_reads / spot_reads, 1),
                "refresh_latency_faster": round(
                    reread["refresh_latency_ms"]["median"]
                    / max(ours["refresh_latency_ms"]["median"], 1e-9),
                    1,
                ),
            },
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
