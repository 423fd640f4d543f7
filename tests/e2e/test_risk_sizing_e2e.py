"""Strategies size their trades within the risk limits: with `risk.max_trade_usd = 1000` and
the arbitrage strategy's default `max_input_usd` (10,000), a price gap is arbitraged with an
input under 1,000 USD instead of every arbitrage being refused `exposure_trade`."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import Chain, running_agent, write_config


async def test_a_small_max_trade_usd_still_arbitrages_a_gap(chain: Chain, workdir: Path) -> None:
    tree = chain.tree(
        workdir,
        risk={"max_trade_usd": 1_000.0},
        strategies={
            "arbitrage": {
                "enabled": True,
                "dexes": ["uniswap_v2", "sushiswap"],
                "min_profit_usd": 0.01,
                "max_input_usd": 10_000.0,
            }
        },
    )
    cfg = write_config(workdir / "agent.toml", tree, {})
    async with running_agent(cfg) as agent:
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert "exposure_trade" not in report.rejected, report.rejected
        assert report.started == 1, report.rejected
        (fill,) = agent.parts.engine.report.fills
        usdc = chain.deployment.tokens["USDC"]
        weth = chain.deployment.tokens["WETH"]
        token = usdc if fill.token_in == usdc.address else weth
        price = 1.0 if token is usdc else chain.deployment.prices_usd["WETH"]
        assert fill.amount_in / 10**token.decimals * price <= 1_000 * 1.01
        assert fill.profit > 0
