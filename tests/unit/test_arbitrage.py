"""Arbitrage sizing on hand-built pools: exact amounts, near-optimal size, net of gas."""

from __future__ import annotations

from agent.dex.v2 import V2Pool, get_amount_out
from agent.dex.v3 import V3Pool
from agent.market.snapshot import MarketSnapshot, PoolRef, PortfolioView
from agent.types import GasPrice, Token
from strategies.arbitrage import ArbitrageParams, ArbitrageStrategy

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20  # WETH < USDC: WETH is token0
TOKENS = {WETH: Token(WETH, "WETH", 18), USDC: Token(USDC, "USDC", 6)}
GAS = GasPrice(
    base_fee_wei=10**9,
    next_base_fee_wei=10**9,
    priority_fee_wei=10**8,
    max_fee_wei=2 * 10**9,
    block=1,
)


def v2(address: str, eth: int, usdc: int) -> V2Pool:
    return V2Pool(address, WETH, USDC, eth * 10**18, usdc * 10**6, 3000, 1)


def snapshot(*pools: V2Pool | V3Pool, stale: frozenset[str] = frozenset()) -> MarketSnapshot:
    return MarketSnapshot(
        block=1,
        timestamp=0.0,
        chain_id=31337,
        tokens=TOKENS,
        pools={p.address: p for p in pools},
        pool_refs={
            p.address: PoolRef(
                p.address,
                ("uniswap_v2", "sushiswap", "uniswap_v3")[i],
                "v2" if isinstance(p, V2Pool) else "v3",
            )
            for i, p in enumerate(pools)
        },
        gas=GAS,
        native_price_usd=3000.0,
        prices_usd={WETH: 3000.0, USDC: 1.0},
        stale_pools=stale,
    )


RICH = PortfolioView(
    balances={WETH: 1_000 * 10**18, USDC: 10**7 * 10**6}, equity_usd=1e7, peak_equity_usd=1e7
)


def test_gap_between_two_v2_pools_is_found_with_exact_amounts() -> None:
    cheap, dear = v2("0x" + "a1" * 20, 1_000, 2_900_000), v2("0x" + "a2" * 20, 1_000, 3_100_000)
    strategy = ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7, min_profit_usd=1.0))
    opportunities = strategy.evaluate(snapshot(cheap, dear), RICH)
    assert opportunities, "a 6.9% gap must be worth trading"
    best = opportunities[0]
    assert best.kind == "arb" and best.token_in == best.token_out
    # The predicted output is exactly the two V2 library results chained.
    first, second = best.route
    pool_of = {cheap.address: cheap, dear.address: dear}
    mid = pool_of[first.pool].quote_exact_input(first.token_in, best.amount_in)
    out = pool_of[second.pool].quote_exact_input(second.token_in, mid)
    assert best.predicted_amount_out == out
    assert best.predicted_profit == out - best.amount_in > 0
    assert best.net_profit_usd == best.gross_profit_usd - best.gas_cost_usd


def test_closed_form_size_is_the_best_size() -> None:
    cheap, dear = v2("0x" + "a1" * 20, 1_000, 2_900_000), v2("0x" + "a2" * 20, 1_000, 3_100_000)
    best = ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7)).evaluate(
        snapshot(cheap, dear), RICH
    )[0]
    pool_of = {cheap.address: cheap, dear.address: dear}

    def profit(amount_in: int) -> int:
        a, b = best.route
        mid = pool_of[a.pool].quote_exact_input(a.token_in, amount_in)
        return pool_of[b.pool].quote_exact_input(b.token_in, mid) - amount_in

    for factor in (0.9, 0.99, 1.01, 1.1):
        assert profit(int(best.amount_in * factor)) <= best.predicted_profit


def test_no_gap_no_trade_and_gas_can_eat_the_edge() -> None:
    same = v2("0x" + "a1" * 20, 1_000, 3_000_000), v2("0x" + "a2" * 20, 1_000, 3_000_000)
    assert (
        ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7)).evaluate(snapshot(*same), RICH) == []
    )
    tiny = v2("0x" + "a1" * 20, 1_000, 3_000_000), v2("0x" + "a2" * 20, 1_000, 3_020_000)
    # 0.67% gap minus 2 x 0.3% fee leaves pennies: not worth 200k gas at 2 gwei and 3,000 USD/ETH.
    assert (
        ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7, min_profit_usd=5.0)).evaluate(
            snapshot(*tiny), RICH
        )
        == []
    )


def test_stale_pools_and_empty_balances_are_skipped() -> None:
    cheap, dear = v2("0x" + "a1" * 20, 1_000, 2_900_000), v2("0x" + "a2" * 20, 1_000, 3_100_000)
    strategy = ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7))
    assert strategy.evaluate(snapshot(cheap, dear, stale=frozenset({dear.address})), RICH) == []
    broke = PortfolioView(balances={}, equity_usd=0, peak_equity_usd=0)
    assert strategy.evaluate(snapshot(cheap, dear), broke) == []


def test_size_is_capped_by_balance() -> None:
    cheap, dear = v2("0x" + "a1" * 20, 1_000, 2_900_000), v2("0x" + "a2" * 20, 1_000, 3_100_000)
    small = PortfolioView(
        balances={WETH: 10**18, USDC: 1_000 * 10**6}, equity_usd=4000, peak_equity_usd=4000
    )
    for opportunity in ArbitrageStrategy(
        ArbitrageParams(max_input_usd=1e7, min_profit_usd=0)
    ).evaluate(snapshot(cheap, dear), small):
        assert opportunity.amount_in <= small.balances[opportunity.token_in]


def test_v2_v3_cycle_uses_the_exact_v3_simulator() -> None:
    from agent.dex.v3_math import get_sqrt_ratio_at_tick

    # A V3 pool priced at ~3,300 USDC/WETH (raw price 3.3e-9) with one wide position.
    tick = -195_350
    pool = V3Pool(
        address="0x" + "b3" * 20,
        token0=WETH,
        token1=USDC,
        fee_pips=500,
        tick_spacing=10,
        sqrt_price_x96=get_sqrt_ratio_at_tick(tick),
        tick=tick,
        liquidity=10**18,
        ticks=((-200_000, 10**18), (-190_000, -(10**18))),
        block=1,
    )
    cheap = v2("0x" + "a1" * 20, 1_000, 3_000_000)
    best = ArbitrageStrategy(ArbitrageParams(max_input_usd=1e7, min_profit_usd=0)).evaluate(
        snapshot(cheap, pool), RICH
    )[0]
    a, b = best.route
    pools = {cheap.address: cheap, pool.address: pool}
    mid = pools[a.pool].quote_exact_input(a.token_in, best.amount_in)
    assert best.predicted_amount_out == pools[b.pool].quote_exact_input(b.token_in, mid)
    assert best.predicted_profit > 0
    assert get_amount_out(10**18, 10**21, 3 * 10**12) > 0  # sanity of the fixture's V2 side
