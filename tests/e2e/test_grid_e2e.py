"""The grid on the devnet: a dev account swings the uniswap_v2 WETH/USDC price across the levels
with big swaps between blocks; the running agent buys a lot each time the price falls through
a level and sells it one level up, on chain (fork mode). Restarted on the same journal in the
middle of a round trip, it remembers which lots it holds: no level is bought twice. A lot
whose buy could not start (its pair busy with another lot's trade) is told so by the engine
and re-arms on the next crossing."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.chain.abi import v2_pair_address
from agent.devnet.traders import SwapResult, swap_v2
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.store.models import IntentStatus, TxStatus
from agent.types import Fill
from agent.wallet.keystore import create_keystore
from strategies.grid import ARMED, HOLDING, WAIT, GridStrategy
from tests.e2e.harness import (
    AGENT_ACCOUNT,
    AGENT_KEY,
    GAPPER,
    AgentRun,
    Chain,
    running_agent,
    start_agent_run,
    write_config,
)

DEX = "uniswap_v2"
LEVELS = [2_875, 2_925, 2_975, 3_025, 3_075]  # USDC per WETH; the devnet starts at 3,000
ORDER_WETH = "0.5"
ORDER_WEI = 5 * 10**17


def grid_tree(chain: Chain, workdir: Path) -> dict[str, Any]:
    return chain.tree(
        workdir,
        # the funded wallet already holds millions in every token: exposure is not the point
        risk={"max_token_exposure_usd": 1e9, "max_total_exposure_usd": 1e9},
        strategies={
            # the swings open arbitrage gaps: only the grid may trade here
            "arbitrage": {"enabled": False},
            "grid": {
                "enabled": True,
                "pair": "WETH/USDC",
                "dex": DEX,
                "lower_price": LEVELS[0],
                "upper_price": LEVELS[-1],
                "levels": len(LEVELS),
                "spacing": "arithmetic",
                "order_size": ORDER_WETH,
                "max_slippage_bps": 100,
            },
        },
    )


async def v2_price(chain: Chain) -> tuple[float, int, int]:
    """(USDC per WETH, WETH reserve, USDC reserve) of the uniswap_v2 pair, reserves raw."""
    a = chain.deployment.addresses
    pair = v2_pair_address(a[f"{DEX}.factory"], a["WETH"], a["USDC"])
    raw = await chain.rpc.call("eth_call", [{"to": pair, "data": "0x0902f1ac"}, "latest"])
    reserve0, reserve1 = int(raw[2:66], 16), int(raw[66:130], 16)
    weth_is_0 = a["WETH"].lower() < a["USDC"].lower()
    weth, usdc = (reserve0, reserve1) if weth_is_0 else (reserve1, reserve0)
    return usdc / 1e6 / (weth / 1e18), weth, usdc


async def move_price(chain: Chain, target: float) -> SwapResult:
    """One big swap by a dev account taking the pair's mid price to about ``target``."""
    a = chain.deployment.addresses
    price, weth, usdc = await v2_price(chain)
    k = weth * usdc
    target_raw = target * 1e6 / 1e18  # raw USDC per raw WETH
    if target < price:  # sell WETH until weth' = sqrt(k / p)
        amount_in = int((math.isqrt(int(k / target_raw)) - weth) / 0.997)
        path = [a["WETH"], a["USDC"]]
    else:  # sell USDC until usdc' = sqrt(k * p)
        amount_in = int((math.isqrt(int(k * target_raw)) - usdc) / 0.997)
        path = [a["USDC"], a["WETH"]]
    swap = await swap_v2(
        chain.rpc, dex=DEX, router=a[f"{DEX}.router"], trader=GAPPER, path=path, amount_in=amount_in
    )
    moved, _, _ = await v2_price(chain)
    assert abs(moved - target) < 5, (moved, target)  # well inside a 50 USDC band
    return swap


async def swing(chain: Chain, agent: AgentRun, target: float) -> list[Fill]:
    """Move the price, let the agent see that block; the fills that tick produced."""
    before = len(agent.parts.engine.report.fills)
    swap = await move_price(chain, target)
    report = await agent.tick(swap.block)
    fills = agent.parts.engine.report.fills[before:]
    assert len(fills) == report.started, agent.parts.engine.report.failures
    return fills


def lot_of(fill: Fill) -> tuple[str, int]:
    """(side, level) of a grid fill, from its intent id ``grid-<seq>-<side>-L<level>-<suffix>``."""
    _, _, side, level, _ = fill.intent_id.split("-")
    return side, int(level.removeprefix("L"))


def grid_strategy(agent: AgentRun) -> GridStrategy:
    (strategy,) = agent.parts.engine.strategies
    assert isinstance(strategy, GridStrategy)  # the only strategy enabled
    return strategy


async def saved_status(journal: Journal) -> list[int]:
    state = await journal.get_strategy_state("grid")
    assert state is not None
    return [int(s) for s in state["book"]["status"]]


async def test_grid_trades_the_oscillation_and_remembers_its_lots_across_a_restart(
    chain: Chain, workdir: Path
) -> None:
    cfg = write_config(workdir / "agent.toml", grid_tree(chain, workdir), {})
    weth, usdc = chain.deployment.tokens["WETH"].address, chain.deployment.tokens["USDC"].address
    weth_start = await chain.balance("WETH", AGENT_ACCOUNT)
    start_price, _, _ = await v2_price(chain)
    assert LEVELS[2] < start_price < LEVELS[3]

    async with running_agent(cfg) as agent:
        assert (await agent.tick()).started == 0  # first price: levels below it are armed

        (buy_l2,) = await swing(chain, agent, 2_950)  # falls through 2,975: buy lot 2
        (buy_l1,) = await swing(chain, agent, 2_900)  # through 2,925: buy lot 1
        (sell_l1,) = await swing(chain, agent, 3_000)  # back over 2,975: sell lot 1
        assert [lot_of(f) for f in (buy_l2, buy_l1, sell_l1)] == [
            ("buy", 2),
            ("buy", 1),
            ("sell", 1),
        ]
        for buy in (buy_l2, buy_l1):  # exact execution, at least the lot's size of WETH
            assert (buy.token_in, buy.token_out) == (usdc, weth)
            assert buy.amount_out == buy.predicted_amount_out >= ORDER_WEI
            assert buy.tx_hash is not None
        assert (sell_l1.token_in, sell_l1.amount_in) == (weth, buy_l1.amount_out)
        assert sell_l1.amount_out == sell_l1.predicted_amount_out > buy_l1.amount_in  # profit
        book = grid_strategy(agent).book
        assert book is not None and book.filled_levels == [2]
        assert book.inventory == buy_l2.amount_out
    # saved as it was when the agent stopped, the last sell's fill included (lot 1 re-armed)
    assert await saved_status(agent.parts.journal) == book.status
    assert book.status[1] == ARMED and book.status[2] == HOLDING

    # A new agent on the same journal, lot 2 still held: a dip through 2,975 must not buy it
    # again (a grid that forgot its lots would), and the rise through 3,025 sells it.
    async with running_agent(cfg) as agent:
        assert (await agent.tick()).started == 0
        restored = grid_strategy(agent).book
        assert restored is not None and restored.filled_levels == [2]
        assert restored.lot_base[2] == buy_l2.amount_out

        assert await swing(chain, agent, 2_950) == []  # lot 2 is held: nothing to buy
        (sell_l2,) = await swing(chain, agent, 3_050)  # over 3,025: sell lot 2
        # Straight down through 3,025 and 2,975 in one block: both lots 3 and 2 want to buy,
        # but one trade per pair is in flight at a time; lot 3 (nearest) buys, lot 2 is told
        # it did not happen and waits for the price to come back to its level.
        (buy_l3,) = await swing(chain, agent, 2_950)
        book = grid_strategy(agent).book
        assert book is not None and book.status[2] == WAIT and not book.pending
        assert await swing(chain, agent, 3_000) == []  # back at 2,975: lot 2 re-armed
        (rebuy_l2,) = await swing(chain, agent, 2_950)  # sold before, so it may buy again
        assert lot_of(sell_l2) == ("sell", 2) and sell_l2.amount_in == buy_l2.amount_out
        assert [lot_of(buy_l3), lot_of(rebuy_l2)] == [("buy", 3), ("buy", 2)]
        book = grid_strategy(agent).book
        assert book is not None and book.filled_levels == [2, 3]

    # The journal over both runs: every level alternates buy, sell, buy ... (never two buys).
    fills = await agent.parts.journal.list_fills(mode="fork")
    by_level: dict[int, list[str]] = defaultdict(list)
    for fill in sorted(fills, key=lambda f: f.block_number or 0):
        side, level = lot_of(fill)
        by_level[level].append(side)
    assert dict(by_level) == {2: ["buy", "sell", "buy"], 1: ["buy", "sell"], 3: ["buy"]}
    assert len({f.intent_id for f in fills}) == len(fills) == 6
    # The wallet holds what the grid holds: the lot bought last, on top of where it started.
    assert await chain.balance("WETH", AGENT_ACCOUNT) == weth_start + (
        buy_l2.amount_out
        + buy_l1.amount_out
        - sell_l1.amount_in
        - sell_l2.amount_in
        + buy_l3.amount_out
        + rebuy_l2.amount_out
    )


async def test_a_lot_bought_by_a_killed_agent_is_held_after_the_restart(
    chain: Chain, workdir: Path
) -> None:
    """SIGKILL right after the grid's buy was broadcast: the buy lands while the agent is down,
    start-up reconciliation settles it, and the restarted grid holds the lot (its saved state
    said the buy was pending). It never buys that level again before selling it, even after
    the pending order's lifetime has passed and the price crossed the level once more."""
    keystore = workdir / "keys" / "keystore.json"
    keystore.parent.mkdir()
    password = "grid crash drill password"
    key = bytes.fromhex(AGENT_KEY.removeprefix("0x"))
    assert create_keystore(keystore, SecretStr(password), key, scrypt_n=2**14) == AGENT_ACCOUNT
    tree = grid_tree(chain, workdir)
    tree["strategies"]["grid"]["pending_ttl_blocks"] = 2  # a forgotten buy re-arms at once
    tree["wallet"] = {"keystore": str(keystore), "password_env": "GRID_E2E_PASSWORD"}
    environ = {"GRID_E2E_PASSWORD": password}
    config_path = workdir / "agent.toml"
    cfg = write_config(config_path, tree, environ)
    db = await init_db(cfg.store.url)
    journal = Journal(session_factory(db))
    log_file = (workdir / "agent.log").open("wb")
    proc = await start_agent_run(
        config_path,
        environ,
        stdout=log_file,
    )
    try:

        async def grid_saved() -> bool:
            state = await journal.get_strategy_state("grid")
            return state is not None and "book" in state

        await _until(grid_saved, proc)  # first price seen: the levels below it are armed
        # From here blocks come only when the test mines one: the agent's transactions wait.
        await chain.rpc.call("evm_setAutomine", [False])
        await move_price(chain, 2_950)  # through 2,975: lot 2 buys

        async def sent(purpose: str) -> bool:
            txs = await journal.list_txs()
            return any(tx.purpose == purpose and tx.status == TxStatus.SENT for tx in txs)

        await _until(lambda: sent("approve"), proc)
        await chain.rpc.call("evm_mine")  # the exact approval lands; the swap follows
        await _until(lambda: sent("swap"), proc)
        proc.kill()  # SIGKILL: the swap is broadcast, its receipt never read
        await proc.wait()
        await chain.rpc.call("evm_mine")  # the buy lands while the agent is down
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await chain.rpc.call("evm_setAutomine", [True])
        log_file.close()
        await db.dispose()

    async with running_agent(cfg) as agent:
        (intent,) = await agent.parts.journal.list_intents()
        assert intent.status == IntentStatus.FILLED  # settled by start-up reconciliation
        assert (await agent.tick()).started == 0
        book = grid_strategy(agent).book
        assert book is not None and book.filled_levels == [2] and not book.pending
        fill = await agent.parts.journal.get_fill(intent.intent.id)
        assert fill is not None and book.lot_base[2] == fill.amount_out >= ORDER_WEI
        for _ in range(3):  # longer than a pending buy lives
            await chain.devnet.mine()
            await agent.tick()
        assert await swing(chain, agent, 3_000) == []  # back over 2,975 (lot 3 arms)
        assert await swing(chain, agent, 2_950) == []  # through 2,975 again: lot 2 is held
        (sell_l2,) = await swing(chain, agent, 3_050)  # over 3,025: the lot is sold
        assert lot_of(sell_l2) == ("sell", 2) and sell_l2.amount_in == fill.amount_out

    fills = await agent.parts.journal.list_fills(mode="fork")
    assert sorted(lot_of(f) for f in fills) == [("buy", 2), ("sell", 2)]


async def _until(
    condition: Callable[[], Awaitable[bool]], proc: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(60):
        while not await condition():
            assert proc.returncode is None, f"the agent exited with {proc.returncode}"
            await asyncio.sleep(0.05)
