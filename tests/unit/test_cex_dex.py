"""DEX–CEX strategy: trades only an edge beyond fees, gas and buffer, never on stale CEX data."""

from __future__ import annotations

import time

from agent.dex.v2 import V2Pool
from agent.market.snapshot import CexQuote, MarketSnapshot, PoolRef, PortfolioView
from agent.types import GasPrice, Reading, Token
from strategies.cex_dex import CexDexParams, CexDexStrategy

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
TOKENS = {WETH: Token(WETH, "WETH", 18), USDC: Token(USDC, "USDC", 6)}
GAS = GasPrice(10**9, 10**9, 10**8, 2 * 10**9, 1)
NOW = time.time()
PORTFOLIO = PortfolioView(
    balances={WETH: 100 * 10**18, USDC: 1_000_000 * 10**6}, equity_usd=1.3e6, peak_equity_usd=1.3e6
)


def snap(usdc_per_eth: int, bid: float, ask: float, age_s: float = 0.0) -> MarketSnapshot:
    pool = V2Pool(
        "0x" + "a1" * 20, WETH, USDC, 1_000 * 10**18, usdc_per_eth * 1_000 * 10**6, 3000, 1
    )
    return MarketSnapshot(
        block=1,
        timestamp=NOW,
        chain_id=31337,
        tokens=TOKENS,
        pools={pool.address: pool},
        pool_refs={pool.address: PoolRef(pool.address, "uniswap_v2", "v2")},
        gas=GAS,
        native_price_usd=3000.0,
        prices_usd={WETH: 3000.0, USDC: 1.0},
        cex={
            WETH: Reading("binance", CexQuote("binance", "ETH/USDC", bid, ask), NOW - age_s, 10.0)
        },
    )


def test_cheap_dex_buys_and_expensive_dex_sells() -> None:
    strategy = CexDexStrategy(CexDexParams())
    buy = strategy.evaluate(snap(2_900, 2_999.5, 3_000.5), PORTFOLIO)
    assert buy and buy[0].token_in == USDC and buy[0].token_out == WETH
    assert buy[0].net_profit_usd > 0 and "advisory hedge: sell" in buy[0].note
    sell = strategy.evaluate(snap(3_100, 2_999.5, 3_000.5), PORTFOLIO)
    assert sell and sell[0].token_in == WETH and sell[0].token_out == USDC
    # The predicted output is the exact V2 amount.
    pool = next(iter(snap(3_100, 1, 1).pools.values()))
    assert sell[0].predicted_amount_out == pool.quote_exact_input(WETH, sell[0].amount_in)


def test_edge_inside_fees_and_buffer_is_ignored() -> None:
    # DEX at 3,000 vs CEX 3,005: 0.17% < 0.3% pool fee + 0.2% buffer + 0.1% CEX fee.
    assert CexDexStrategy(CexDexParams()).evaluate(snap(3_000, 3_004.5, 3_005.5), PORTFOLIO) == []


def test_stale_cex_price_is_never_traded() -> None:
    assert (
        CexDexStrategy(CexDexParams()).evaluate(snap(2_900, 2_999.5, 3_000.5, age_s=60), PORTFOLIO)
        == []
    )
