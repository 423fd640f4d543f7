"""Benchmark: event-driven pool state vs re-reading every pool each block, behind a proxy that
enforces provider limits; prints JSON.

Starts a scale devnet of ``--pools`` pools (``agent.devnet.scale``: both V2 DEXes and V3 at
every fee tier, 100 included; the state is cached under anvil/state/ after the first run),
discovers the pools, and puts two registries over the same blocks, each behind its own local
proxy enforcing the issue's provider limits (1,000 calls per batch, 5 MB per request,
eth_getLogs over at most 10,000 blocks and 10,000 results, 25 requests/s with HTTP 429 beyond):
the baseline re-reads every pool per block (multicall), the other advances pools by their logs
(one eth_getLogs a block plus a rotating spot check). Every block real swaps touch about
``--touched-pct`` percent of the pools. The first load of the event-driven registry is timed
under the 25 requests/s limit. At the end every event-advanced pool is compared with the
re-read one (exactness).

Usage: .venv/bin/python scripts/bench_scale.py [--pools 10000] [--blocks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.chain.limits import ProviderLimits
from agent.chain.rpc import RpcClient
from agent.devnet.scale import ScaleDevnet, ScaleMarket
from agent.dex.pools import Pool, PoolRegistry, RefreshResult
from tests.fakes.rpc_proxy import EnforcedLimits, FaultyRpcProxy

CAPS = EnforcedLimits(
    max_batch_calls=1_000,
    max_body_bytes=5_000_000,
    logs_max_block_range=10_000,
    logs_max_results=10_000,
    requests_per_s=25,
)
# what the agent is configured with: the proxy's caps, except the body size, where Anvil behind
# it accepts less (2 MB: a larger body is answered "-32600 Invalid request")
LIMITS = ProviderLimits(
    max_calls_per_batch=1_000,
    max_request_bytes=2_000_000,
    logs_max_block_range=10_000,
    logs_max_results=10_000,
    requests_per_s=25,
)
SPOT_CHECK = 16


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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
        "blocks_failed": sum(r.error is not None for r in results),
    }


def registry(
    devnet: ScaleDevnet, client: RpcClient, event_driven: bool, window: float
) -> PoolRegistry:
    """The baseline re-reads every pool per block; the event-driven registry (the agent's way)
    loads in the background."""
    a = devnet.addresses
    return PoolRegistry(
        client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
        fee_tiers=(100, 500, 3000, 10000),
        limits=LIMITS,
        event_driven=event_driven,
        spot_check_size=SPOT_CHECK,
        tick_window_pct=window,
        background_load=event_driven,
    )


async def first_load(
    reg: PoolRegistry, client: RpcClient, tokens: list[str], head: int
) -> dict[str, Any]:
    """Discovery, then every pool loaded at ``head`` (by ``load_pending`` in bounded batches
    when the registry loads in the background, else by the refresh itself), then a refresh."""
    requests, calls = client.request_count, client.call_count
    started = time.perf_counter()
    await reg.discover(tokens)
    if reg.background_load:
        await reg.refresh(head)
        await reg.load_pending(forever=False)
    await reg.refresh(head)
    return {
        "pools": len(reg.pool_refs),
        "http_requests": client.request_count - requests,
        "json_rpc_calls": client.call_count - calls,
        "seconds": round(time.perf_counter() - started, 2),
        "stale_pools_left": len(reg.stale_pools | reg.loading_pools),
    }


def same_state(a: Pool | None, b: Pool | None) -> bool:
    """The pools agree in content (the block each was last changed at aside)."""
    return a is not None and b is not None and replace(a, block=0) == replace(b, block=0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--touched-pct", type=float, default=2.0)
    parser.add_argument("--tick-window-pct", type=float, default=10.0)
    args = parser.parse_args()
    setup_started = time.perf_counter()
    async with (
        ScaleDevnet(args.pools) as devnet,
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=CAPS) as reread_proxy,
        FaultyRpcProxy(devnet.rpc_url, failure_rate=0.0, limits=CAPS) as events_proxy,
        RpcClient([reread_proxy.url], limits=LIMITS) as reread_client,
        RpcClient([events_proxy.url], limits=LIMITS) as events_client,
        RpcClient([devnet.rpc_url]) as direct,
    ):
        assert devnet.rpc is not None
        setup_s = time.perf_counter() - setup_started
        market = ScaleMarket(devnet.rpc, devnet.deployment)
        tokens = [t.address for t in devnet.tokens.values()]
        head = int(await direct.call_raw("eth_blockNumber"), 16)
        events = registry(devnet, events_client, True, args.tick_window_pct)
        loaded = await first_load(events, events_client, tokens, head)
        loaded["refused_by_provider"] = dict(events_proxy.refused)
        baseline = registry(devnet, reread_client, False, args.tick_window_pct)
        baseline_loaded = await first_load(baseline, reread_client, tokens, head)
        pools = len(events.pool_refs)
        touched = max(1, round(pools * args.touched_pct / 100))
        refused_before = {
            "reread": dict(reread_proxy.refused),
            "events": dict(events_proxy.refused),
        }
        reread_results: list[RefreshResult] = []
        event_results: list[RefreshResult] = []
        market_s = 0.0
        for _ in range(args.blocks):
            started = time.perf_counter()
            head = await market.step(touched)
            market_s += time.perf_counter() - started
            reread_results.append(await baseline.refresh(head))
            event_results.append(await events.refresh(head))
        differing = sum(not same_state(events.get(a), baseline.get(a)) for a in events.pool_refs)
        kinds = [ref.kind for ref in events.pool_refs.values()]
        reread_reads = kinds.count("v2") + 2 * kinds.count("v3")
        spot_reads = round(reread_reads * min(SPOT_CHECK, pools) / pools, 1)  # the sample's share
        reread = summary(reread_results)
        ours = summary(event_results)
        peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        report = {
            "pools": pools,
            "pools_touched_per_block": touched,
            "blocks": args.blocks,
            "swaps_reverted": market.reverted,
            "provider_limits": {
                "calls_per_batch": 1_000,
                "bytes_per_request": 5_000_000,
                "bytes_per_request_anvil": 2_000_000,
                "logs_block_range": 10_000,
                "logs_results": 10_000,
                "requests_per_s": 25,
            },
            "devnet": {
                "loaded_from_cached_state": devnet.loaded_from_state,
                "start_seconds": round(setup_s, 1),
                "market_seconds_per_block": round(market_s / max(args.blocks, 1), 3),
            },
            "first_load_event_registry": loaded,
            "first_load_baseline_registry": baseline_loaded,
            "baseline_reread_every_pool": {
                **reread,
                "refused_by_provider": {
                    k: v - refused_before["reread"].get(k, 0)
                    for k, v in reread_proxy.refused.items()
                },
            },
            "event_driven": {
                **ours,
                "event_refreshes": events.event_refreshes,
                "drift_count": events.drift_count,
                "pools_differing_from_reread_at_end": differing,
                "stale_pools_at_end": len(events.stale_pools),
                "refused_by_provider": {
                    k: v - refused_before["events"].get(k, 0)
                    for k, v in events_proxy.refused.items()
                },
            },
            # pool reads inside the multicall: every pool (V3: slot0 + liquidity) vs the sample
            "contract_reads_per_block": {"reread": reread_reads, "event_driven": spot_reads},
            "ratios_baseline_over_event_driven": {
                "http_requests_per_block": round(
                    reread["http_requests_per_block"]["median"]
                    / max(ours["http_requests_per_block"]["median"], 1e-9),
                    2,
                ),
                "contract_reads": round(reread_reads / spot_reads, 1),
                "refresh_latency": round(
                    reread["refresh_latency_ms"]["median"]
                    / max(ours["refresh_latency_ms"]["median"], 1e-9),
                    1,
                ),
            },
            "peak_rss_mb": peak_rss_mb,
        }
        report["targets"] = {
            "requests_per_block_median_le_2": ours["http_requests_per_block"]["median"] <= 2,
            "requests_per_block_p95_le_4": ours["http_requests_per_block"]["p95"] <= 4,
            "refresh_latency_median_le_50ms": ours["refresh_latency_ms"]["median"] <= 50,
            "no_stale_pools": ours["blocks_with_stale_pools"] == 0 and not events.stale_pools,
            "no_drift": events.drift_count == 0 and differing == 0,
            "peak_rss_le_600mb": peak_rss_mb <= 600,
            "first_load_no_stale_pool": loaded["stale_pools_left"] == 0,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
