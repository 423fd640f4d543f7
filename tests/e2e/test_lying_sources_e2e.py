"""A lying node and a rogue pool cannot steer the real agent on the devnet.

- The agent's only RPC node answers one bogus head (10^9) between real ones: the head is
  refused and the operator told, and the agent keeps trading on the real heads (a later price
  gap is still closed). Before, the block source yielded only higher numbers and the engine
  skipped everything below: one lie froze the agent for good.
- A pool is stuffed with 10^15 minted USDC (so it prices WETH absurdly): the WETH price, the
  equity, the drawdown and the exposure do not move, and the operator is told which pool.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from eth_utils import function_signature_to_4byte_selector
from rich.console import Console

from agent.app.build import open_agent
from agent.dex.v2 import V2Pool
from agent.events import HeadRefused, PriceOutlier
from agent.market.builder import pool_sides
from tests.e2e.harness import (
    GAPPER,
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    agent_signer,
    running_agent,
    wait_for,
    write_config,
)
from tests.fakes.rpc_proxy import FaultyRpcProxy
from tests.fakes.telegram_fake import TelegramFake

BOGUS_HEAD = 10**9


def operator_saw(telegram: TelegramFake, title: str) -> list[str]:
    return [
        m.visible_text
        for m in telegram.messages_to(OPERATOR_CHAT_ID)
        if title in m.visible_text.splitlines()[0]
    ]


async def test_a_node_answering_one_bogus_head_between_real_ones_keeps_the_agent_trading(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    async with FaultyRpcProxy(chain.devnet.rpc_url, failure_rate=0.0) as node:
        tree = chain.tree(workdir, telegram_url=telegram.base_url)
        tree["chain"].update({"rpc_urls": [node.url], "poll_interval_s": 0.05})
        cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
        async with open_agent(
            cfg, mode="fork", signer=agent_signer(), console=Console(file=io.StringIO())
        ) as parts:
            refused: list[HeadRefused] = []
            parts.events.subscribe(refused.append, HeadRefused)
            engine = parts.engine
            stop = asyncio.Event()
            running = asyncio.create_task(engine.run(parts.blocks(), stop=stop))
            try:

                async def idle() -> None:
                    """Every block acted on and no trade in flight (a closed gap may leave a
                    smaller one the next block trades too)."""
                    async with asyncio.timeout(60):
                        while True:
                            head = await chain.block_number()
                            ticks = engine.report.ticks
                            if not engine.trades_in_flight and ticks and ticks[-1].block == head:
                                return
                            await asyncio.sleep(0.1)

                async def calm() -> None:
                    """Idle, with nothing left to trade (a pair busy with the first trade
                    leaves the rest of its gap to a later block: give it one)."""
                    for _ in range(10):
                        await idle()
                        if engine.report.ticks[-1].opportunities == 0:
                            return
                        await chain.devnet.mine(1)
                    raise AssertionError("the market never calmed down")

                first_gap = await chain.open_gap("sushiswap", usd=60_000.0)
                await wait_for(lambda: bool(engine.report.fills), timeout_s=60)
                await calm()

                node.lie("eth_blockNumber", hex(BOGUS_HEAD))  # the next poll hears 10^9
                await wait_for(lambda: bool(refused), timeout_s=30)
                before_lie = len(engine.report.fills)

                second_gap = await chain.open_gap("sushiswap", usd=60_000.0)
                await wait_for(lambda: len(engine.report.fills) > before_lie, timeout_s=60)
                await idle()
                await wait_for(lambda: bool(operator_saw(telegram, "Head refused")), 30)
            finally:
                stop.set()
                async with asyncio.timeout(30):
                    await running

    assert node.told == [("eth_blockNumber", hex(BOGUS_HEAD))]
    [refusal] = refused
    assert (refusal.number, refusal.reason) == (BOGUS_HEAD, "too_far_ahead")
    ticked = [t.block for t in engine.report.ticks]
    assert BOGUS_HEAD not in ticked and ticked == sorted(ticked)
    fills = engine.report.fills
    assert fills[0].block_number == first_gap.block + 1
    after_lie = fills[before_lie]
    assert after_lie.block_number == second_gap.block + 1  # the next gap, closed at once
    assert after_lie.profit == after_lie.predicted_profit > 0
    [alert] = operator_saw(telegram, "Head refused")
    assert f"block {BOGUS_HEAD}" in alert and "too_far_ahead" in alert


async def test_a_pool_with_absurd_reserves_moves_neither_equity_nor_drawdown_nor_exposure(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    deployment = chain.deployment
    weth, usdc = deployment.tokens["WETH"], deployment.tokens["USDC"]
    [rogue] = [
        p
        for p in chain.devnet.pools
        if p.kind == "v2"
        and p.dex == "sushiswap"
        and {p.token0, p.token1} == {weth.address, usdc.address}
    ]
    tree = chain.tree(
        workdir,
        telegram_url=telegram.base_url,
        # no strategy: a rogue pool is a real arbitrage, and trading would move equity
        strategies={"arbitrage": {"enabled": False}},
    )
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
    async with running_agent(cfg) as agent:
        parts = agent.parts
        outliers: list[PriceOutlier] = []
        parts.events.subscribe(outliers.append, PriceOutlier)
        await agent.tick()
        weth_usd = parts.market.last_prices[weth.address]
        equity = parts.portfolio.equity_usd
        exposure = parts.portfolio.exposure_usd()
        assert equity > 0 and exposure.get(weth.address, 0.0) > 0  # the agent holds WETH

        # Anyone can mint the devnet's USDC: 10^15 of it straight into the pair, then sync()
        # makes them reserves. The pair now prices WETH at ~ $10^12.
        mint = function_signature_to_4byte_selector("mint(address,uint256)").hex()
        await chain.send_as(
            GAPPER,
            usdc.address,
            "0x" + mint + rogue.address[2:].lower().rjust(64, "0") + f"{10**21:064x}",
        )
        sync = function_signature_to_4byte_selector("sync()").hex()
        await chain.send_as(GAPPER, rogue.address, "0x" + sync)
        await agent.tick()

        pool = parts.registry.get(rogue.address)
        assert isinstance(pool, V2Pool)
        rogue_price_raw, _, _ = pool_sides(pool, weth.address)
        assert rogue_price_raw * 10 ** (weth.decimals - usdc.decimals) > 10**11  # it is absurd

        # unmoved: the honest pools' consensus (one pool fewer in it: a hair's difference)
        assert parts.market.last_prices[weth.address] == pytest.approx(weth_usd, rel=1e-3)
        assert parts.portfolio.equity_usd == pytest.approx(equity, rel=1e-3)
        assert parts.portfolio.exposure_usd() == pytest.approx(exposure, rel=1e-3)
        assert parts.portfolio.drawdown_pct < 0.1
        assert parts.risk.halt is None
        [outlier] = outliers
        assert (outlier.pool, outlier.dex, outlier.symbol) == (rogue.address, "sushiswap", "WETH")
        assert outlier.price_usd == parts.market.last_prices[weth.address]
        assert outlier.pool_price_usd > 10**11

        await chain.devnet.mine(1)
        await agent.tick()  # still an outlier: reported once
        await wait_for(lambda: bool(operator_saw(telegram, "Price outlier ignored")), 30)
        assert len(outliers) == 1
    [alert] = operator_saw(telegram, "Price outlier ignored")
    assert "WETH on sushiswap" in alert
