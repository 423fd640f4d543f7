"""Feed polling cost: requests and latency per cycle, batched vs a naive per-symbol baseline.

Five sources (Binance and Kraken through ccxt, CoinGecko, 1inch, X) and 50 symbols, served by
the local fake servers of the test suite with a fixed per-response latency. Both modes run in
the same process on the same fakes:

* batched: ccxt ``fetch_tickers`` for all symbols, CoinGecko ``/simple/price`` with many ids,
  X cashtags packed into few OR-queries; 1inch has no batch endpoint (one quote per pair).
* naive: one request per symbol everywhere.

Prints JSON. Usage: ``python scripts/bench_feeds.py [--cycles N] [--latency-ms MS]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.feeds.cex import CexClient
from agent.feeds.coingecko import CoinGeckoClient
from agent.feeds.http import SourcePolicy
from agent.feeds.oneinch import OneInchClient, QuotePair
from agent.feeds.x import XClient, cashtag_queries
from tests.fakes.http_fakes import (
    BinanceFake,
    CoinGeckoFake,
    FakeServer,
    KrakenFake,
    OneInchFake,
    XFake,
    x_post,
)

N_SYMBOLS = 50
USDC = "0x" + "ab" * 20
POLICY = SourcePolicy(rate_per_s=100_000.0, burst=1000, timeout_s=10.0, max_attempts=1)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def measure(
    name: str,
    sources: dict[str, tuple[FakeServer, Callable[[], Awaitable[Any]]]],
    cycles: int,
) -> dict[str, Any]:
    # One warm-up cycle: ccxt loads markets once per client, not per cycle.
    await asyncio.gather(*(poll() for _, poll in sources.values()))
    before = {source: len(server.requests) for source, (server, _) in sources.items()}
    latencies_ms: list[float] = []
    for _ in range(cycles):
        started = time.perf_counter()
        await asyncio.gather(*(poll() for _, poll in sources.values()))
        latencies_ms.append((time.perf_counter() - started) * 1000)
    per_source = {
        source: (len(server.requests) - before[source]) / cycles
        for source, (server, _) in sources.items()
    }
    return {
        "mode": name,
        "requests_per_cycle": {**per_source, "total": sum(per_source.values())},
        "cycle_latency_ms": {
            "median": round(statistics.median(latencies_ms), 2),
            "p95": round(p95(latencies_ms), 2),
        },
    }


async def main(cycles: int, latency_ms: float) -> dict[str, Any]:
    bases = [f"TK{i:02d}" for i in range(N_SYMBOLS)]
    addresses = {base: "0x" + f"{i + 1:040x}" for i, base in enumerate(bases)}
    binance, kraken = BinanceFake(), KrakenFake()
    coingecko, oneinch, x = CoinGeckoFake(), OneInchFake(), XFake()
    for i, base in enumerate(bases):
        binance.add_market(base, "USDT", 10.0 + i)
        kraken.add_market(base, "USD", 10.0 + i)
        coingecko.prices_usd[f"coin-{base.lower()}"] = 10.0 + i
        oneinch.rates[(addresses[base].lower(), USDC)] = (10 + i, 1)
    packed = cashtag_queries(bases)
    per_token = {base: f"${base} -is:retweet" for base in bases}
    for query in [*packed.values(), *per_token.values()]:
        x.posts[query] = [x_post(1, "gm"), x_post(2, "wagmi")]
    servers = [f.server for f in (binance, kraken, coingecko, oneinch, x)]
    for server in servers:
        server.latency_s = latency_ms / 1000
        await server.start()
    try:
        async with aiohttp.ClientSession() as session:

            def cex(fake: BinanceFake | KrakenFake, exchange_id: str, quote: str, batch: bool):
                return CexClient(
                    session,
                    exchange_id,
                    [f"{b}/{quote}" for b in bases],
                    api_urls=fake.server.url,
                    policy=POLICY,
                    batch_tickers=batch,
                )

            coin_ids = {base: f"coin-{base.lower()}" for base in bases}
            pairs = [QuotePair(addresses[b].lower(), USDC, 10**18) for b in bases]
            oneinch_client = OneInchClient(
                session,
                "bench-key",
                1,
                pairs=pairs,
                base_url=f"{oneinch.server.url}/swap/v6.0",
                policy=POLICY,
            )
            results = []
            clients: list[CexClient] = []
            for mode, batch in (("batched", True), ("naive_per_symbol", False)):
                binance_client = cex(binance, "binance", "USDT", batch)
                kraken_client = cex(kraken, "kraken", "USD", batch)
                clients += [binance_client, kraken_client]
                coingecko_client = CoinGeckoClient(
                    session,
                    coin_ids,
                    base_url=f"{coingecko.server.url}/api/v3",
                    policy=POLICY,
                    batch_size=200 if batch else 1,
                )
                x_client = XClient(
                    session,
                    "bench-bearer",
                    token_queries=packed if batch else per_token,
                    base_url=f"{x.server.url}/2",
                    policy=POLICY,
                    max_pages=1,
                )
                sources: dict[str, tuple[FakeServer, Callable[[], Awaitable[Any]]]] = {
                    "binance": (
                        binance.server,
                        lambda c=binance_client: c.poll(order_books=False),
                    ),
                    "kraken": (kraken.server, lambda c=kraken_client: c.poll(order_books=False)),
                    "coingecko": (coingecko.server, coingecko_client.poll_prices),
                    "1inch": (oneinch.server, oneinch_client.poll),
                    "x": (x.server, x_client.poll),
                }
                results.append(await measure(mode, sources, cycles))
            for client in clients:
                await client.close()
    finally:
        for server in servers:
            await server.stop()
    batched, naive = results
    return {
        "benchmark": "feeds_polling_cycle",
        "sources": 5,
        "symbols": N_SYMBOLS,
        "cycles": cycles,
        "fake_response_latency_ms": latency_ms,
        "scope": "prices only (tickers / simple price / quotes / search); order books excluded",
        "batched": batched,
        "baseline_naive": naive,
        "request_reduction_x": round(
            naive["requests_per_cycle"]["total"] / batched["requests_per_cycle"]["total"], 2
        ),
        "latency_speedup_x": round(
            naive["cycle_latency_ms"]["median"] / batched["cycle_latency_ms"]["median"], 2
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.cycles, args.latency_ms)), indent=2))
