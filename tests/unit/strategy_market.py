"""Hand-built markets for the grid, DCA and whale-follow tests: real pool math, no chain.

V2 pools are built at a chosen price and depth so a test moves the market by building the next
snapshot; every amount a strategy predicts is checked against the same pool's exact quote.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.dex.v2 import V2Pool
from agent.market.snapshot import (
    AggregatorQuote,
    MarketSnapshot,
    PoolRef,
    PortfolioView,
    SentimentScore,
)
from agent.types import GasPrice, Reading, Token, WhaleTrade

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20  # WETH < USDC: WETH is token0 of the pair
UNI = "0x" + "33" * 20
TOKENS = {WETH: Token(WETH, "WETH", 18), USDC: Token(USDC, "USDC", 6), UNI: Token(UNI, "UNI", 18)}
WETH_USDC_POOL = "0x" + "a1" * 20
UNI_USDC_POOL = "0x" + "a2" * 20
GAS = GasPrice(
    base_fee_wei=10**9,
    next_base_fee_wei=10**9,
    priority_fee_wei=10**8,
    max_fee_wei=2 * 10**9,
    block=1,
)
NOW = 1_700_000_000.0


def weth_usdc(price: float, depth_weth: int = 10_000) -> V2Pool:
    """The WETH/USDC pair with ``depth_weth`` WETH at ``price`` USDC per WETH."""
    return V2Pool(
        WETH_USDC_POOL, WETH, USDC, depth_weth * 10**18, int(depth_weth * price * 10**6), 3000, 1
    )


def uni_usdc(price: float, depth_uni: int = 1_000_000) -> V2Pool:
    """The UNI/USDC pair (USDC is token1: "0x22.." < "0x33.." makes UNI token1; keep order)."""
    return V2Pool(
        UNI_USDC_POOL, USDC, UNI, int(depth_uni * price * 10**6), depth_uni * 10**18, 3000, 1
    )


def snapshot(
    *pools: V2Pool,
    block: int = 100,
    timestamp: float = NOW,
    sentiment: Mapping[str, Reading[SentimentScore]] | None = None,
    aggregator: Mapping[tuple[str, str], Reading[AggregatorQuote]] | None = None,
    whale_trades: tuple[WhaleTrade, ...] = (),
    prices_usd: Mapping[str, float] | None = None,
    aggregator_executable: bool = True,
) -> MarketSnapshot:
    prices = {WETH: 3_000.0, USDC: 1.0, UNI: 10.0}
    for pool in pools:  # value tokens at the pools' own prices
        if pool.address == WETH_USDC_POOL:
            prices[WETH] = pool.reserve1 / 10**6 / (pool.reserve0 / 10**18)
        if pool.address == UNI_USDC_POOL:
            prices[UNI] = pool.reserve0 / 10**6 / (pool.reserve1 / 10**18)
    return MarketSnapshot(
        block=block,
        timestamp=timestamp,
        chain_id=31337,
        tokens=TOKENS,
        pools={p.address: p for p in pools},
        pool_refs={p.address: PoolRef(p.address, "uniswap_v2", "v2") for p in pools},
        gas=GAS,
        native_price_usd=3_000.0,
        prices_usd=prices_usd if prices_usd is not None else prices,
        sentiment=sentiment or {},
        aggregator=aggregator or {},
        whale_trades=whale_trades,
        aggregator_executable=aggregator_executable,
    )


def sentiment_reading(
    score: float, age_s: float, max_age_s: float = 600.0
) -> Reading[SentimentScore]:
    """A sentiment reading fetched ``age_s`` seconds before ``NOW``."""
    return Reading("x+coingecko", SentimentScore(score), NOW - age_s, max_age_s)


def portfolio(weth: int = 0, usdc: int = 0, uni: int = 0) -> PortfolioView:
    """Balances in whole tokens."""
    return PortfolioView(
        balances={WETH: weth * 10**18, USDC: usdc * 10**6, UNI: uni * 10**18},
        equity_usd=1e6,
        peak_equity_usd=1e6,
    )
