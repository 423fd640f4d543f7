"""Benchmark: market state for 300 pools per block vs one eth_call per quote; prints JSON.

Starts a devnet with 9 extra tokens (240 V2 pools on two V2 DEXes + 60 V3 pools), discovers the
pools through the factories, then for ``--blocks`` blocks (with real swaps in between) refreshes
all of them and records JSON-RPC requests and latency per refresh. Measures local quote
throughput on one core (V2, V3 within one tick range, V3 crossing 3+ initialized ticks) and, in
the same run, the per-quote baseline a client like uniswap-python uses: one ``eth_call`` to
QuoterV2 / Router02.getAmountsOut per pool and quote (encoded by web3 contract objects, one
HTTP request per quote), counted by the same RPC client.

Usage: .venv/bin/python scripts/bench_market.py [--blocks 50] [--baseline-quotes 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from agent.chain.rpc import RpcClient
from agent.devnet import Devnet
from agent.devnet.traders import swap_on_pool
from agent.dex.pools import PoolRegistry
from agent.dex.v2 import V2Pool
from agent.dex.v3 import V3Pool

ROOT = Path(__file__).resolve().parents[1]
MINT_PARAMS = "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"
MINT = function_signature_to_4byte_selector(f"mint({MINT_PARAMS})")


def load_abi(name: str) -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = json.loads((ROOT / "abis" / f"{name}.json").read_text())["abi"]
    return abi


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def quotes_per_second(fn: Any, cases: list[tuple[Any, ...]], seconds: float = 1.5) -> float:
    """Calls ``fn(*case)`` round-robin over ``cases`` for about ``seconds``; returns calls/s."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    n = len(cases)
    while True:
        for i in range(2000):
            fn(*cases[i % n])
        count += 2000
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def crossed_ticks(pool: V3Pool, token_in: str, amount: int) -> int:
    after = pool.swap(token_in, amount).pool
    low, high = sorted((pool.tick, after.tick))
    return sum(1 for t, _ in pool.ticks if low < t <= high)


def units(devnet: Devnet, token: str, usd: float) -> int:
    symbol = next(s for s, t in devnet.tokens.items() if t.address == token)
    price = devnet.deployment.prices_usd.get(symbol, 1.0) if devnet.deployment else 1.0
    return max(1, int(usd / price * 10 ** devnet.tokens[symbol].decimals))


async def move_markets(devnet: Devnet, rng: random.Random) -> None:
    """Two real swaps through the routers (sent directly, not counted as agent requests)."""
    assert devnet.rpc is not None
    a = devnet.addresses
    trader = devnet.accounts[1][0]
    base = {t.address for s, t in devnet.tokens.items() if not s.startswith("ALT")}
    pools = [p for p in devnet.pools if p.token0 in base and p.token1 in base]
    for info in rng.sample(pools, 2):
        token_in = rng.choice([info.token0, info.token1])
        amount = units(devnet, token_in, rng.uniform(100, 20_000))
        await swap_on_pool(devnet.rpc, a, info, trader=trader, token_in=token_in, amount_in=amount)


async def densify_v3_ticks(
    devnet: Devnet, per_pool: int, rng: random.Random, pools: int | None = None
) -> int:
    """Mint ``per_pool`` narrow positions around the price of every V3 pool (from the deployer,
    which holds the token inventory), so pools look like mainnet ones: many initialized ticks
    near the price. Returns the number of positions minted."""
    assert devnet.rpc is not None
    deployer = devnet.accounts[0][0]
    npm = devnet.addresses["uniswap_v3.position_manager"]
    slot0 = function_signature_to_4byte_selector("slot0()")
    infos = [p for p in devnet.pools if p.kind == "v3"]
    if pools is not None:
        infos = rng.sample(infos, pools)
    raws = await devnet.rpc.batch(
        [("eth_call", [{"to": p.address, "data": "0x" + slot0.hex()}, "latest"]) for p in infos]
    )
    txs = []
    for info, raw in zip(infos, raws, strict=True):
        tick = int.from_bytes(bytes.fromhex(raw[2:])[32:64], "big", signed=True)
        spacing = info.tick_spacing or 60
        for _ in range(per_pool):
            lower = (tick // spacing + rng.randint(-30, 10)) * spacing
            upper = lower + spacing * rng.randint(1, 20)
            amount0 = units(devnet, info.token0, rng.uniform(2_000, 50_000))
            amount1 = units(devnet, info.token1, rng.uniform(2_000, 50_000))
            params = (
                info.token0,
                info.token1,
                info.fee_pips,
                lower,
                upper,
                amount0,
                amount1,
                0,
                0,
                deployer,
                2**40,
            )
            data = MINT + encode([MINT_PARAMS], [params])
            txs.append(
                {"from": deployer, "to": npm, "data": "0x" + data.hex(), "gas": hex(900_000)}
            )
    nonce = int(await devnet.rpc.call("eth_getTransactionCount", [deployer, "latest"]), 16)
    await devnet.rpc.call("evm_setAutomine", [False])
    try:
        for start in range(0, len(txs), 30):
            batch = [
                {**t, "nonce": hex(nonce + start + i)}
                for i, t in enumerate(txs[start : start + 30])
            ]
            hashes = await devnet.rpc.batch([("eth_sendTransaction", [t]) for t in batch])
            await devnet.rpc.call("evm_mine", [])
            receipts = await devnet.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            assert all(int(r["status"], 16) == 1 for r in receipts), "a mint failed"
    finally:
        await devnet.rpc.call("evm_setAutomine", [True])
    return len(txs)


async def bench_registry(
    devnet: Devnet, client: RpcClient, blocks: int, rng: random.Random
) -> tuple[PoolRegistry, dict[str, Any]]:
    a = devnet.addresses
    registry = PoolRegistry(
        client,
        v2_factories={"uniswap_v2": a["uniswap_v2.factory"], "sushiswap": a["sushiswap.factory"]},
        v3_factory=a["uniswap_v3.factory"],
    )
    before = client.request_count
    started = time.perf_counter()
    discovered = await registry.discover(t.address for t in devnet.tokens.values())
    discover_s = time.perf_counter() - started
    discover_requests = client.request_count - before

    head = int(await client.call_raw("eth_blockNumber"), 16)
    initial = await registry.refresh(head)
    assert initial.ok, initial.error

    latencies_ms: list[float] = []
    http_requests: list[int] = []
    rpc_calls: list[int] = []
    ticks_reloads = 0
    for block_index in range(blocks):
        await move_markets(devnet, rng)
        if block_index % 10 == 9:
            # liquidity changes too: a Mint makes that pool's ticks be re-read
            await densify_v3_ticks(devnet, 1, rng, pools=1)
        head = int(await devnet.call("eth_blockNumber"), 16)
        result = await registry.refresh(head)
        assert result.ok, result.error
        latencies_ms.append(result.duration_s * 1000)
        ticks_reloads += len(result.ticks_reloaded)
        http_requests.append(result.http_requests or 0)
        rpc_calls.append(result.rpc_calls)
    report = {
        "pools_discovered": discovered,
        "discover": {"http_requests": discover_requests, "seconds": round(discover_s, 4)},
        "initial_full_load": {
            "http_requests": initial.http_requests,
            "json_rpc_calls": initial.rpc_calls,
            "seconds": round(initial.duration_s, 3),
        },
        "blocks_refreshed": blocks,
        "pools_with_ticks_reread": ticks_reloads,
        "http_requests_per_refresh": {
            "mean": statistics.mean(http_requests),
            "max": max(http_requests),
        },
        "json_rpc_calls_per_refresh": {"mean": statistics.mean(rpc_calls), "max": max(rpc_calls)},
        "refresh_latency_ms": {
            "median": round(statistics.median(latencies_ms), 2),
            "p95": round(percentile(latencies_ms, 0.95), 2),
        },
    }
    return registry, report


def bench_local_quotes(
    devnet: Devnet, registry: PoolRegistry, rng: random.Random
) -> dict[str, Any]:
    pools = list(registry.pools.values())
    v2_cases = []
    for pool in pools:
        if isinstance(pool, V2Pool):
            for token in (pool.token0, pool.token1):
                for _ in range(4):
                    v2_cases.append((pool, token, units(devnet, token, rng.uniform(10, 10_000))))
    single: list[tuple[V3Pool, str, int]] = []
    crossing: list[tuple[V3Pool, str, int]] = []
    for pool in pools:
        if not isinstance(pool, V3Pool):
            continue
        for token in (pool.token0, pool.token1):
            small = units(devnet, token, 50)
            if crossed_ticks(pool, token, small) == 0:
                for _ in range(8):
                    single.append((pool, token, small + rng.randrange(0, max(1, small // 10))))
            # the smallest amount that crosses 3 initialized ticks (doubling, then bisection)
            high = small
            while crossed_ticks(pool, token, high) < 3 and high < 2**200:
                high *= 2
            if high >= 2**200:
                continue
            low = high // 2
            while high - low > max(1, high // 1000):
                middle = (low + high) // 2
                if crossed_ticks(pool, token, middle) >= 3:
                    high = middle
                else:
                    low = middle
            # several sizes per pool and direction: each quote computes its own last step
            for _ in range(8):
                crossing.append((pool, token, high + rng.randrange(0, max(1, high // 20))))
    crossed = [crossed_ticks(p, t, x) for p, t, x in crossing]

    def v2_quote(pool: V2Pool, token: str, amount: int) -> int:
        return pool.quote_exact_input(token, amount)

    def v3_quote(pool: V3Pool, token: str, amount: int) -> int:
        return pool.quote_exact_input(token, amount)

    def v3_quote_cold(pool: V3Pool, token: str, amount: int) -> int:
        # no reuse of full-range step amounts from earlier quotes (a bench-only peek)
        assert pool._table is not None
        pool._table.full_steps.clear()
        return pool.quote_exact_input(token, amount)

    return {
        "v2": round(quotes_per_second(v2_quote, v2_cases)),
        "v3_single_range": round(quotes_per_second(v3_quote, single)),
        "v3_crossing_3plus_ticks": round(quotes_per_second(v3_quote, crossing)),
        "v3_crossing_3plus_ticks_no_step_memo": round(quotes_per_second(v3_quote_cold, crossing)),
        "v3_single_range_no_step_memo": round(quotes_per_second(v3_quote_cold, single)),
        "cases": {
            "v2": len(v2_cases),
            "v3_single_range": len(single),
            "v3_crossing": len(crossing),
            "v3_crossing_ticks_median": statistics.median(crossed) if crossed else 0,
        },
    }


async def bench_baseline(devnet: Devnet, quotes: int, rng: random.Random) -> dict[str, Any]:
    """One ``eth_call`` per quote, sequentially, as a per-quote client does: the web3 contract
    objects encode the call and decode the answer (no I/O), and the call is one plain JSON-RPC
    ``eth_call``. (A web3 ``contract.functions.f().call()`` sends ``eth_chainId`` twice before
    each ``eth_call``; a careful client caches the chain id, so that is not what is measured.)"""
    async with RpcClient([devnet.rpc_url]) as client:
        w3 = client.web3()
        a = devnet.addresses
        quoter = w3.eth.contract(address=a["uniswap_v3.quoter_v2"], abi=load_abi("QuoterV2"))
        routers = {
            dex: w3.eth.contract(address=a[f"{dex}.router"], abi=load_abi("UniswapV2Router02"))
            for dex in ("uniswap_v2", "sushiswap")
        }
        latencies_ms: list[float] = []
        sample = [rng.choice(devnet.pools) for _ in range(quotes)]
        for info in sample:
            token_in, token_out = info.token0, info.token1
            amount = units(devnet, token_in, 1_000)
            started = time.perf_counter()
            if info.kind == "v2":
                contract = routers[info.dex]
                fn = contract.get_function_by_name("getAmountsOut")
                args: tuple[Any, ...] = (amount, [token_in, token_out])
            else:
                contract = quoter
                fn = contract.get_function_by_name("quoteExactInputSingle")
                args = ((token_in, token_out, amount, info.fee_pips, 0),)
            data = contract.encode_abi(fn.abi_element_identifier, args=args)
            raw = await client.call_raw(
                "eth_call", [{"to": contract.address, "data": data}, "latest"]
            )
            output_types = [o["type"] for o in fn.abi["outputs"]]
            w3.codec.decode(output_types, bytes.fromhex(raw[2:]))
            latencies_ms.append((time.perf_counter() - started) * 1000)
        per_quote_requests = client.request_count / quotes
    return {
        "quotes": quotes,
        "http_requests_per_quote": round(per_quote_requests, 3),
        "latency_ms_per_quote": {
            "median": round(statistics.median(latencies_ms), 3),
            "p95": round(percentile(latencies_ms, 0.95), 3),
            "mean": round(statistics.mean(latencies_ms), 3),
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=50)
    parser.add_argument("--baseline-quotes", type=int, default=120)
    parser.add_argument("--extra-tokens", type=int, default=9)
    parser.add_argument("--positions-per-v3-pool", type=int, default=12)
    args = parser.parse_args()
    rng = random.Random(1)
    async with Devnet(
        name="bench-market", extra_tokens=args.extra_tokens, deployments_dir=None
    ) as devnet:
        minted = await densify_v3_ticks(devnet, args.positions_per_v3_pool, rng)
        v2_count = sum(p.kind == "v2" for p in devnet.pools)
        v3_count = sum(p.kind == "v3" for p in devnet.pools)
        async with RpcClient([devnet.rpc_url]) as client:
            registry, refresh = await bench_registry(devnet, client, args.blocks, rng)
        local = bench_local_quotes(devnet, registry, rng)
        baseline = await bench_baseline(devnet, args.baseline_quotes, rng)

    pools = v2_count + v3_count
    ours_requests = refresh["http_requests_per_refresh"]["mean"]
    ours_ms = refresh["refresh_latency_ms"]["median"]
    # fresh quotes for every pool in a block: per-quote client vs refresh + local quotes
    baseline_block_requests = baseline["http_requests_per_quote"] * pools
    baseline_block_ms = baseline["latency_ms_per_quote"]["mean"] * pools
    local_ms_all_pools = 1000 * (
        (v2_count / local["v2"]) + (v3_count / local["v3_crossing_3plus_ticks"])
    )
    ours_block_ms = ours_ms + local_ms_all_pools
    report = {
        "pools": {"v2": v2_count, "v3": v3_count, "total": pools},
        "extra_v3_positions_minted": minted,
        "refresh": refresh,
        "local_quotes_per_s_one_core": local,
        "baseline_per_quote_eth_call": {
            **baseline,
            "http_requests_per_block_all_pools": round(baseline_block_requests, 1),
            "ms_per_block_all_pools": round(baseline_block_ms, 1),
        },
        "ours_per_block_all_pools": {
            "http_requests": ours_requests,
            "ms_refresh_median_plus_local_quotes": round(ours_block_ms, 2),
        },
        "ratios": {
            "fewer_requests": round(baseline_block_requests / ours_requests, 1),
            "faster": round(baseline_block_ms / ours_block_ms, 1),
            "local_quote_vs_eth_call_quote": round(
                baseline["latency_ms_per_quote"]["mean"] / (1000 / local["v3_single_range"]), 1
            ),
        },
        "targets_met": {
            "pools_at_least_300": pools >= 300,
            "requests_per_refresh_at_most_2": refresh["http_requests_per_refresh"]["max"] <= 2,
            "refresh_median_at_most_30ms": ours_ms <= 30,
            "v2_quotes_1m_per_s": local["v2"] >= 1_000_000,
            "v3_single_range_80k_per_s": local["v3_single_range"] >= 80_000,
            "v3_crossing_50k_per_s": local["v3_crossing_3plus_ticks"] >= 50_000,
            "fewer_requests_100x": baseline_block_requests / ours_requests >= 100,
            "faster_10x": baseline_block_ms / ours_block_ms >= 10,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
