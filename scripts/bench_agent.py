"""Benchmark: the whole agent on 300 pools with every strategy enabled; prints JSON.

Starts a devnet with 9 extra tokens (240 V2 pools on two V2 DEXes + 60 V3 pools), funds the
agent's wallet and deploys its ArbExecutor, and runs the real agent (``open_agent`` wiring, the
real engine, fork mode) with arbitrage, cex_dex (simulated CEX feed), grid, dca and whale_follow
(following the simulated whale) while a seeded ``MarketSimulator`` opens price gaps, trades
noise and whale swaps. Every block the engine refreshes all pools and the strategies decide;
trades it starts are really executed on the chain.

Reported per tick (``TickReport``):

- ``decide_ms``: block seen -> decisions made, without the RPC round trips: snapshot assembly
  (USD prices from the pools, feeds), every strategy (isolated, in worker threads), ranking and
  the risk gate. Target: median <= 50 ms.
- ``rpc_ms``: the RPC round trips of the same tick (pool refresh multicall + logs, gas, whale
  scan, balances), reported separately.
- ``latency_ms``: the sum (what an operator sees from block seen to decisions).

``strategy_alone_ms``: each strategy timed alone on the same snapshots, a fresh instance per
snapshot (for the arbitrage: without reusing the previous block's sizings).

Peak RSS is this process's ``ru_maxrss`` (the agent; Anvil runs in its own process). Target:
<= 250 MB.

Baselines, measured in the same run on the same snapshots, with the DEX addresses read once:

- ``sequential_requote``: each strategy evaluated one after another with pool quotes done by
  one ``eth_call`` per quote against the node at the snapshot's block (Router02.getAmountsOut /
  QuoterV2), which is how a bot without local exact pool math sizes an arbitrage;
- ``multicall_requote``: what a careful bot without local pool math writes: the same sizing
  with all candidates searched in lockstep and every hop quote of one search step and hop depth
  in one Multicall3 ``eth_call``.

Only the arbitrage strategy's sizing is re-quoted (the dominant cost); the quote count and its
latency per tick are reported, with the ratio to the agent's local decision time.

Usage: .venv/bin/python scripts/bench_agent.py [--blocks 40] [--warmup 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector
from rich.console import Console

from agent.app.build import AgentParts, open_agent
from agent.app.rehearsal import fund_and_deploy
from agent.chain.multicall import Call, Multicall
from agent.config.models import AgentConfig
from agent.devnet import Devnet
from agent.devnet.market import MarketSimulator
from agent.devnet.node import DEV_ACCOUNTS
from agent.dex.v2 import V2Pool
from agent.engine.loop import TickReport
from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Opportunity, RouteHop
from agent.wallet.keystore import Signer

AGENT_ACCOUNT, AGENT_KEY = DEV_ACCOUNTS[3]
GET_AMOUNTS_OUT = function_signature_to_4byte_selector("getAmountsOut(uint256,address[])")
QUOTE_EXACT_INPUT_SINGLE = function_signature_to_4byte_selector(
    "quoteExactInputSingle((address,address,uint256,uint24,uint160))"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "median": round(statistics.median(values), 2),
        "p95": round(percentile(values, 0.95), 2),
        "max": round(max(values), 2),
    }


def config_tree(devnet: Devnet, workdir: Path, arb_executor: str) -> dict[str, Any]:
    symbols = list(devnet.tokens)
    whale = DEV_ACCOUNTS[8][0]
    return {
        "chain": {
            "name": "devnet",
            "chain_id": 31337,
            "rpc_urls": [devnet.rpc_url],
            "deployment_file": str(workdir / "bench.json"),
            "poll_interval_s": 0.2,
        },
        "execution": {"mode": "fork", "arb_executor": arb_executor, "slippage_bps": 30},
        "risk": {
            "max_gas_price_gwei": 500,
            "max_trade_usd": 500_000.0,
            "max_token_exposure_usd": 50_000_000.0,
            "max_total_exposure_usd": 100_000_000.0,
            "daily_loss_limit_usd": 50_000.0,
            "max_drawdown_pct": 50.0,
            "max_price_impact_bps": 1_000,
            "cooldown_s": 0.0,
            "revert_cooldown_s": 0.0,
            "token_allowlist": symbols,
            "kill_switch_file": str(workdir / "KILL"),
        },
        "market": {"tokens": symbols},
        "engine": {"block_source": "poll", "strategy_timeout_s": 5.0},
        "strategies": {
            "arbitrage": {"enabled": True, "min_profit_usd": 1.0, "max_input_usd": 200_000.0},
            "cex_dex": {"enabled": True, "exchange": "sim", "min_profit_usd": 1.0},
            "grid": {
                "enabled": True,
                "pair": "WETH/USDC",
                "dex": "uniswap_v3",
                "lower_price": 2_700,
                "upper_price": 3_300,
                "levels": 20,
                "order_size": 0.5,
            },
            "dca": {"enabled": True, "buy_token": "WETH", "spend_token": "USDC", "interval_s": 5},
            "whale_follow": {"enabled": True, "wallets": [whale], "min_whale_trade_usd": 10_000},
        },
        "feeds": {"simulated": True, "whales": {"enabled": True, "wallets": [whale]}},
        "alerts": {"console": {"enabled": False}},
        "metrics": {"enabled": False},
        "store": {"url": f"sqlite+aiosqlite:///{workdir / 'journal.db'}"},
    }


class BlockFeed:
    """Blocks handed to the engine one at a time, after the simulated market has moved."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()

    async def blocks(self) -> AsyncIterator[int]:
        while True:
            yield await self.queue.get()


async def mined(devnet: Devnet, tx_hashes: list[str]) -> None:
    """Wait for the simulated traders' swaps of this step: automine answers a send a moment
    before the block is stored, and the agent must see the block that holds them all."""
    for tx_hash in tx_hashes:
        while await devnet.call("eth_getTransactionReceipt", [tx_hash]) is None:
            await asyncio.sleep(0.002)


# -- the baselines: the arbitrage sized with quotes from the node ---------------------------------
class NodeQuoter:
    """Hop quotes from the node (Router02.getAmountsOut for V2 pools, QuoterV2 for V3 pools),
    with the DEX addresses read from the deployment once, as a careful bot would."""

    def __init__(self, parts: AgentParts) -> None:
        addresses = parts.cfg.chain_addresses()
        self.parts = parts
        self.routers = {name: dex.router02 for name, dex in addresses.v2_dexes().items()}
        self.quoter = next(iter(addresses.v3_dexes().values())).quoter_v2
        self.multicall = Multicall(
            parts.rpc, max_calls_per_chunk=parts.cfg.market.multicall_batch_size
        )

    def call(self, hop: RouteHop, amount: int) -> Call:
        """The read that quotes ``amount`` of ``hop.token_in`` through ``hop.pool``."""
        pool = self.parts.registry.pools[hop.pool]
        if isinstance(pool, V2Pool):
            router = self.routers[self.parts.registry.pool_refs[hop.pool].dex]
            assert router is not None
            path = [hop.token_in, hop.token_out]
            return Call(router, GET_AMOUNTS_OUT + encode(["uint256", "address[]"], [amount, path]))
        assert self.quoter is not None
        params = (hop.token_in, hop.token_out, amount, pool.fee_pips, 0)
        data = QUOTE_EXACT_INPUT_SINGLE + encode(
            ["(address,address,uint256,uint24,uint160)"], [params]
        )
        return Call(self.quoter, data)

    def amount_out(self, hop: RouteHop, return_data: bytes) -> int:
        if isinstance(self.parts.registry.pools[hop.pool], V2Pool):
            (amounts,) = decode(["uint256[]"], return_data)
            return int(amounts[-1])
        return int(decode(["uint256", "uint160", "uint32", "uint256"], return_data)[0])

    async def quote(self, hop: RouteHop, amount: int, block: int) -> int:
        """One ``eth_call`` for one hop at ``block``."""
        call = self.call(hop, amount)
        raw = await self.parts.rpc.call_raw(
            "eth_call", [{"to": call.target, "data": "0x" + call.calldata.hex()}, hex(block)]
        )
        return self.amount_out(hop, bytes.fromhex(raw[2:]))


def evaluate_all(
    parts: AgentParts, snapshot: MarketSnapshot, view: PortfolioView
) -> tuple[list[Opportunity], list[Opportunity]]:
    """Every strategy one after another on this thread: (arbitrage candidates, all found)."""
    from strategies.arbitrage import ArbitrageStrategy

    arbitrage: list[Opportunity] = []
    found: list[Opportunity] = []
    for strategy in parts.engine.strategies:
        opportunities = strategy.evaluate(snapshot, view)
        if isinstance(strategy, ArbitrageStrategy):
            arbitrage.extend(opportunities)
        found.extend(opportunities)
    return arbitrage, found


async def sequential_requote_tick(
    parts: AgentParts, quoter: NodeQuoter, snapshot: MarketSnapshot, search_iterations: int
) -> tuple[float, int]:
    """The baseline's decision time for one snapshot and its eth_call count.

    Strategies run one after another on the event loop; the arbitrage's golden-section sizing
    of every candidate cycle that passes the marginal-rate filter is done with node quotes
    (``search_iterations`` x hops eth_calls per candidate, one hop after the other, as a bot
    without local pool math would), then the risk gate runs.
    """
    view = parts.portfolio.mark(snapshot)
    started = time.perf_counter()
    calls = 0
    arbitrage, found = evaluate_all(parts, snapshot, view)
    for opportunity in arbitrage:
        # Each candidate's sizing: search_iterations evaluations of the cycle output.
        for _ in range(search_iterations):
            amount = opportunity.amount_in
            for hop in opportunity.route:
                amount = await quoter.quote(hop, amount, snapshot.block)
                calls += 1
    for opportunity in found:
        parts.risk.check(opportunity, snapshot, view, time.time(), slippage_bps=30)
    return time.perf_counter() - started, calls


async def multicall_requote_tick(
    parts: AgentParts, quoter: NodeQuoter, snapshot: MarketSnapshot, search_iterations: int
) -> tuple[float, int, int]:
    """The stronger baseline: the same sizing, but every candidate's search runs in lockstep and
    the quotes of one hop depth for all candidates go in one Multicall3 ``eth_call`` (a route's
    next hop needs the previous hop's output, so a step of the search costs one round trip per
    hop, whatever the number of candidates). Returns (seconds, eth_calls, quotes)."""
    view = parts.portfolio.mark(snapshot)
    started = time.perf_counter()
    round_trips = quotes = 0
    arbitrage, found = evaluate_all(parts, snapshot, view)
    depth_max = max((len(o.route) for o in arbitrage), default=0)
    for _ in range(search_iterations):
        amounts = [o.amount_in for o in arbitrage]
        for depth in range(depth_max):
            live = [i for i, o in enumerate(arbitrage) if len(o.route) > depth and amounts[i]]
            calls = [quoter.call(arbitrage[i].route[depth], amounts[i]) for i in live]
            result = await quoter.multicall.aggregate(calls, snapshot.block)
            round_trips += result.rpc_calls
            quotes += len(calls)
            for i, answer in zip(live, result.results, strict=True):
                hop = arbitrage[i].route[depth]
                amounts[i] = quoter.amount_out(hop, answer.return_data) if answer.success else 0
    for opportunity in found:
        parts.risk.check(opportunity, snapshot, view, time.time(), slippage_bps=30)
    return time.perf_counter() - started, round_trips, quotes


def strategies_alone_ms(
    parts: AgentParts, snapshots: list[MarketSnapshot], views: list[PortfolioView]
) -> dict[str, dict[str, float]]:
    """Each strategy timed alone on the run's snapshots, sequentially on this thread, a fresh
    instance per snapshot: for the arbitrage that is its cost without reusing the previous
    block's sizings (the engine's instance reuses them)."""
    times: dict[str, list[float]] = {}
    for snapshot, view in zip(snapshots, views, strict=True):
        for strategy in parts.engine.strategies:
            cls: Any = type(strategy)  # every strategy class is built from its params
            fresh = cls(strategy.params)  # type: ignore[attr-defined]
            started = time.perf_counter()
            fresh.evaluate(snapshot, view)
            times.setdefault(strategy.name, []).append((time.perf_counter() - started) * 1000)
    return {name: summary(values) for name, values in times.items()}


# -- the run -------------------------------------------------------------------------------------
async def run(blocks: int, warmup: int, baseline_ticks: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    async with Devnet(name="bench", extra_tokens=9, deployments_dir=workdir) as devnet:
        assert devnet.rpc is not None and devnet.deployment is not None
        executor = await fund_and_deploy(devnet.rpc, devnet.deployment, AGENT_ACCOUNT)
        cfg = AgentConfig.from_mapping(
            config_tree(devnet, workdir, executor), environ={}, base_dir=workdir
        )
        simulator = MarketSimulator(devnet.rpc, devnet.deployment, gap_every=3, whale_every=4)
        signer = Signer(bytes.fromhex(AGENT_KEY.removeprefix("0x")))
        async with open_agent(
            cfg, mode="fork", signer=signer, console=Console(file=io.StringIO())
        ) as parts:
            reports: dict[int, TickReport] = {}
            snapshots: list[MarketSnapshot] = []
            views: list[PortfolioView] = []

            def on_tick(report: TickReport) -> None:
                reports[report.block] = report
                if parts.engine.last_snapshot is not None:
                    snapshots.append(parts.engine.last_snapshot)
                    views.append(parts.portfolio.view())

            parts.engine.on_tick = on_tick
            feed = BlockFeed()
            stop = asyncio.Event()
            engine_task = asyncio.create_task(parts.engine.run(feed.blocks(), stop=stop))
            try:
                for _ in range(warmup + blocks):
                    await simulator.step()
                    await mined(devnet, [tx for tx, _ in simulator._pending])
                    block = await parts.w3.eth.block_number
                    feed.queue.put_nowait(block)
                    while block not in reports or parts.engine.trades_in_flight:
                        if engine_task.done():
                            engine_task.result()
                        await asyncio.sleep(0.005)
                measured = [reports[b] for b in sorted(reports)][warmup:]
                alone = strategies_alone_ms(parts, snapshots[warmup:], views[warmup:])
                baseline = []
                requotes = []
                batched: list[float] = []
                batched_calls: list[int] = []
                batched_quotes: list[int] = []
                iterations = cfg.strategies.arbitrage.search_iterations
                quoter = NodeQuoter(parts)
                for snapshot in snapshots[warmup : warmup + baseline_ticks]:
                    seconds, calls = await sequential_requote_tick(
                        parts, quoter, snapshot, iterations
                    )
                    baseline.append(seconds * 1000)
                    requotes.append(calls)
                    seconds, calls, quotes = await multicall_requote_tick(
                        parts, quoter, snapshot, iterations
                    )
                    batched.append(seconds * 1000)
                    batched_calls.append(calls)
                    batched_quotes.append(quotes)
            finally:
                stop.set()
                await engine_task
            run_report = parts.engine.report
            pools = len(parts.registry.pools)

    decide = [t.decide_s * 1000 for t in measured]
    rpc = [t.rpc_s * 1000 for t in measured]
    total = [(t.decide_s + t.rpc_s) * 1000 for t in measured]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decide_median = statistics.median(decide) if decide else 0.0
    baseline_median = statistics.median(baseline) if baseline else 0.0
    batched_median = statistics.median(batched) if batched else 0.0
    return {
        "benchmark": "agent tick: 300 pools, every strategy enabled",
        "pools": pools,
        "strategies": [s.name for s in parts.engine.strategies],
        "blocks_measured": len(measured),
        "warmup_blocks": warmup,
        "decide_ms": summary(decide),
        "rpc_ms": summary(rpc),
        "latency_ms": summary(total),
        "targets": {
            "decide_median_ms": 50,
            "decide_median_met": decide_median <= 50,
            "peak_rss_mb": 250,
            "peak_rss_met": peak_rss_mb <= 250,
        },
        "peak_rss_mb": round(peak_rss_mb, 1),
        "opportunities_per_tick": summary([float(t.opportunities) for t in measured]),
        "trades_started": sum(t.started for t in reports.values()),  # whole run, like fills
        "fills": len(run_report.fills),
        "failures": len(run_report.failures),
        "strategy_errors": sum(t.strategy_errors for t in measured),
        "strategy_alone_ms": alone,
        "baseline": {
            "name": "sequential_requote: strategies one after another on the event loop; the "
            "arbitrage sizes its final candidates (not every cycle: favours the baseline) by a "
            "golden-section search of search_iterations steps, each quoting every hop with one "
            "eth_call (Router02.getAmountsOut / QuoterV2) at the snapshot's block",
            "ticks": len(baseline),
            "decide_ms": summary(baseline),
            "eth_calls_per_tick": summary([float(c) for c in requotes]),
            "median_ratio_vs_agent": round(baseline_median / decide_median, 1)
            if decide_median
            else None,
        },
        "baseline_multicall": {
            "name": "multicall_requote: the same sizing with every candidate's search in "
            "lockstep, the quotes of one hop depth for all candidates in one Multicall3 eth_call "
            "(QuoterV2 / Router02.getAmountsOut) at the snapshot's block",
            "ticks": len(batched),
            "decide_ms": summary(batched),
            "eth_calls_per_tick": summary([float(c) for c in batched_calls]),
            "quotes_per_tick": summary([float(q) for q in batched_quotes]),
            "median_ratio_vs_agent": round(batched_median / decide_median, 1)
            if decide_median
            else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--baseline-ticks", type=int, default=2)
    args = parser.parse_args()
    result = asyncio.run(run(args.blocks, args.warmup, args.baseline_ticks))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
