"""Grid: levels, fills and inventory along a price path, restarts, range exits, live pricing."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest
from pydantic import ValidationError

from agent.dex.v3 import V3Pool
from agent.dex.v3_math import get_tick_at_sqrt_ratio
from agent.market.snapshot import MarketSnapshot, PoolRef, PortfolioView
from agent.types import Fill, NotFilled, Opportunity
from strategies.grid import (
    ARMED,
    HOLDING,
    WAIT,
    GridBook,
    GridParams,
    GridStrategy,
    grid_levels,
)
from tests.unit.strategy_market import (
    USDC,
    WETH,
    WETH_USDC_POOL,
    portfolio,
    snapshot,
    weth_usdc,
)

LOT = 10**17  # 0.1 WETH


def book(on_range_exit: str = "stop") -> GridBook:
    # levels 90, 95, 100, 105, 110: lots 0..3 (bought below 90/95/100/105, sold one level up)
    return GridBook(grid_levels(90.0, 110.0, 5, "arithmetic"), LOT, on_range_exit)  # type: ignore[arg-type]


def settle(b: GridBook, price: float, tick: int) -> list[tuple[str, int]]:
    """Feed one price; fill every order at the trigger price; return (side, lot) pairs."""
    orders = b.on_price(price, tick)
    for order in orders:
        quote = round(order.base_amount * order.trigger_price / 10**12)  # 6-decimal quote units
        b.apply_fill(order.id, order.base_amount, quote)
    return [(o.side, o.level) for o in orders]


def test_levels_are_arithmetic_or_geometric_between_the_bounds() -> None:
    assert grid_levels(100.0, 200.0, 5, "arithmetic") == [100.0, 125.0, 150.0, 175.0, 200.0]
    geometric = grid_levels(100.0, 400.0, 3, "geometric")
    assert geometric == pytest.approx([100.0, 200.0, 400.0])
    ratios = [b / a for a, b in itertools.pairwise(geometric)]
    assert ratios == pytest.approx([2.0, 2.0])
    with pytest.raises(ValueError):
        grid_levels(200.0, 100.0, 5, "arithmetic")


def test_params_validate_bounds_and_pair() -> None:
    with pytest.raises(ValidationError, match="upper_price"):
        GridParams(lower_price=3_500, upper_price=2_500)
    with pytest.raises(ValidationError, match="BASE/QUOTE"):
        GridParams(pair="WETH")
    with pytest.raises(ValidationError, match="extra"):
        GridParams(unknown=1)  # type: ignore[call-arg]


def test_fills_and_inventory_along_a_path_crossing_levels_down_and_up() -> None:
    b = book()
    assert settle(b, 101.0, 0) == []  # first price arms the levels below it (90, 95, 100)
    assert b.status == [ARMED, ARMED, ARMED, WAIT]
    assert settle(b, 99.0, 1) == [("buy", 2)]
    assert settle(b, 98.0, 2) == []  # same band: nothing
    assert settle(b, 94.0, 3) == [("buy", 1)]
    assert b.inventory == 2 * LOT and b.filled_levels == [1, 2]
    assert settle(b, 96.0, 4) == []  # lot 1 sells only at 100
    assert settle(b, 99.0, 5) == []
    assert settle(b, 100.0, 6) == [("sell", 1)]  # a price equal to a level reaches it
    assert b.inventory == LOT and b.filled_levels == [2]
    assert settle(b, 104.0, 7) == []
    assert settle(b, 106.0, 8) == [("sell", 2)]  # also arms lot 3 (price rose above 105)
    assert b.inventory == 0 and b.status == [ARMED, ARMED, ARMED, ARMED]
    assert settle(b, 91.0, 9) == [("buy", 3), ("buy", 2), ("buy", 1)]
    assert b.inventory == 3 * LOT
    # profits: lot 1 bought at 95 sold at 100, lot 2 bought at 100 sold at 105 (0.1 WETH each)
    assert b.realized_quote == 2 * 500_000


def test_no_level_fills_twice_on_a_random_walk() -> None:
    b = GridBook(grid_levels(2_500.0, 3_500.0, 21, "geometric"), LOT, "stop")
    price, side_by_lot = 3_000.0, {}
    rng = __import__("random").Random(3)
    for tick in range(20_000):
        price = min(max(price * math.exp(rng.gauss(0, 0.004)), 2_550.0), 3_450.0)
        for side, lot in settle(b, price, tick):
            # a lot alternates buy, sell, buy, ... and is never bought while held
            assert side_by_lot.get(lot, "sell") != side, f"lot {lot} {side} twice in a row"
            side_by_lot[lot] = side
        held = [lot for lot, side in side_by_lot.items() if side == "buy"]
        assert b.inventory == len(held) * LOT
    assert len(side_by_lot) > 10, "the walk should have crossed most levels"


def test_restart_from_state_restores_exactly_and_trades_like_no_restart() -> None:
    path = [101.0, 99.0, 94.0, 96.0, 91.0, 89.0, 92.0, 97.0, 101.0, 104.0, 99.0, 93.0, 107.0]
    uninterrupted = book("recenter")
    expected = [settle(uninterrupted, p, t) for t, p in enumerate(path)]

    first = book("recenter")
    got = [settle(first, p, t) for t, p in enumerate(path[:6])]
    saved = json.loads(json.dumps(first.to_state()))  # what the journal stores
    second = book("recenter")
    second.restore(saved)
    assert second.to_state() == first.to_state()
    got += [settle(second, p, t) for t, p in enumerate(path[6:], start=6)]
    assert got == expected
    assert second.to_state() == uninterrupted.to_state()


def test_stop_on_range_exit_stops_trading() -> None:
    b = book("stop")
    settle(b, 101.0, 0)
    assert settle(b, 89.0, 1) == [("buy", 2), ("buy", 1), ("buy", 0)]  # levels crossed on the way
    assert b.stopped
    assert settle(b, 106.0, 2) == []  # held lots are not sold: the grid stopped
    assert b.inventory == 3 * LOT


def test_recenter_on_range_exit_moves_the_grid_and_keeps_the_lots() -> None:
    b = book("recenter")
    settle(b, 101.0, 0)
    settle(b, 80.0, 1)  # falls out of the range: three lots bought, grid re-centred on 80
    assert b.recenters == 1
    assert b.levels == pytest.approx([70.0, 75.0, 80.0, 85.0, 90.0])
    assert b.inventory == 3 * LOT
    # held lots take the sell levels around the price: lot 3 (sells at 90), lot 2 (at 85) and
    # lot 1, whose sell level 80 is the price itself: the one lot too many, sold next
    assert [b.status[i] for i in (1, 2, 3)] == [HOLDING, HOLDING, HOLDING]
    assert settle(b, 80.5, 2) == [("sell", 1)]
    assert settle(b, 86.0, 3) == [("sell", 2)]
    assert b.inventory == LOT


def test_pending_order_expires_and_the_lot_waits_for_the_next_crossing() -> None:
    b = GridBook(grid_levels(90.0, 110.0, 5, "arithmetic"), LOT, "stop", pending_ttl=3)
    b.on_price(101.0, 0)
    (order,) = b.on_price(99.0, 1)
    assert b.quiet_range() is None  # pending: every price matters
    assert b.on_price(99.0, 3) == []
    assert b.on_price(99.0, 5) == []  # expired at tick 5: the buy did not happen
    assert order.id not in b.pending and b.inventory == 0
    assert b.on_price(98.0, 6) == []  # no retry on every tick
    assert b.on_price(101.0, 7) == []  # back above the level: re-armed
    assert [o.level for o in b.on_price(99.5, 8)] == [2]


# --- live strategy on exact pool math --------------------------------------------------------


def live_params(**overrides: object) -> GridParams:
    values: dict[str, object] = {
        "enabled": True,
        "pair": "WETH/USDC",
        "dex": "uniswap_v2",
        "lower_price": 2_900,
        "upper_price": 3_100,
        "levels": 5,  # 2900, 2950, 3000, 3050, 3100
        "order_size": "0.5",
    }
    values.update(overrides)
    return GridParams.model_validate(values)


def fill_for(opportunity_id: str, token_in: str, token_out: str, amount_in: int, out: int) -> Fill:
    return Fill(
        intent_id=f"{opportunity_id}-a1b2c3",
        mode="paper",
        tx_hash=None,
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in,
        amount_out=out,
        profit=0,
        predicted_amount_in=amount_in,
        predicted_amount_out=out,
        predicted_profit=0,
    )


def test_live_grid_buys_with_exact_pool_amounts_and_survives_a_restart() -> None:
    strategy = GridStrategy(live_params())
    strategy.on_start(None)
    wallet = portfolio(weth=10, usdc=100_000)
    assert strategy.evaluate(snapshot(weth_usdc(3_010.0), block=1), wallet) == []
    pool = weth_usdc(2_990.0)
    (buy,) = strategy.evaluate(snapshot(pool, block=2), wallet)
    assert (buy.token_in, buy.token_out, buy.kind) == (USDC, WETH, "swap")
    # exact: the USDC needed for 0.5 WETH, and what that USDC buys, from the pool's own math
    assert buy.amount_in == pool.quote_exact_output(WETH, 5 * 10**17)
    assert buy.predicted_amount_out == pool.quote_exact_input(USDC, buy.amount_in) >= 5 * 10**17
    assert buy.route[0].pool == WETH_USDC_POOL and buy.route[0].dex == "uniswap_v2"
    assert buy.net_profit_usd == pytest.approx(buy.gross_profit_usd - buy.gas_cost_usd)
    assert buy.gross_profit_usd == pytest.approx(0.5 * 50.0)  # one level step on 0.5 WETH

    # the agent restarts before the fill arrives: state goes through the journal (JSON)
    saved = json.loads(json.dumps(strategy.state()))
    restarted = GridStrategy(live_params())
    restarted.on_start(saved)
    assert restarted.evaluate(snapshot(pool, block=3), wallet) == []  # no second buy of lot 2
    restarted.on_fill(fill_for(buy.id, USDC, WETH, buy.amount_in, buy.predicted_amount_out))
    assert restarted.book is not None and restarted.book.inventory == buy.predicted_amount_out
    assert restarted.evaluate(snapshot(weth_usdc(2_980.0), block=4), wallet) == []

    # up through 3050: the lot sells, exactly its bought amount
    up = weth_usdc(3_060.0)
    (sell,) = restarted.evaluate(snapshot(up, block=5), wallet)
    assert (sell.token_in, sell.amount_in) == (WETH, buy.predicted_amount_out)
    assert sell.predicted_amount_out == up.quote_exact_input(WETH, sell.amount_in)
    restarted.on_fill(fill_for(sell.id, WETH, USDC, sell.amount_in, sell.predicted_amount_out))
    assert restarted.book.inventory == 0
    assert restarted.book.realized_quote == sell.predicted_amount_out - buy.amount_in > 0


def test_a_buy_that_did_not_fill_re_arms_its_lot() -> None:
    strategy = GridStrategy(live_params())
    strategy.on_start(None)
    wallet = portfolio(weth=10, usdc=100_000)
    strategy.evaluate(snapshot(weth_usdc(3_010.0), block=1), wallet)
    (buy,) = strategy.evaluate(snapshot(weth_usdc(2_990.0), block=2), wallet)
    # the risk gate refused it: nothing traded, nothing held, nothing left pending
    strategy.on_fill(
        NotFilled(
            intent_id=buy.id,
            opportunity_id=buy.id,
            token_in=buy.token_in,
            token_out=buy.token_out,
            predicted_amount_in=buy.amount_in,
            predicted_amount_out=buy.predicted_amount_out,
            reason="exposure_trade",
        )
    )
    assert strategy.book is not None
    assert (strategy.book.pending, strategy.book.inventory) == ({}, 0)
    # the lot buys again at its next crossing, not before
    assert strategy.evaluate(snapshot(weth_usdc(2_990.0), block=3), wallet) == []
    strategy.evaluate(snapshot(weth_usdc(3_010.0), block=4), wallet)
    (again,) = strategy.evaluate(snapshot(weth_usdc(2_990.0), block=5), wallet)
    assert (again.token_in, again.amount_in) == (buy.token_in, buy.amount_in)


def test_live_grid_refuses_a_fill_worse_than_the_slippage_limit() -> None:
    strategy = GridStrategy(live_params(max_slippage_bps=50, order_size="5"))
    strategy.on_start(None)
    wallet = portfolio(weth=10, usdc=100_000)
    strategy.evaluate(snapshot(weth_usdc(3_010.0, depth_weth=100), block=1), wallet)
    # 5 WETH from a 100 WETH pool costs ~5% over the level: beyond 10 bps, so no trade
    assert strategy.evaluate(snapshot(weth_usdc(2_990.0, depth_weth=100), block=2), wallet) == []
    # a deep pool executes within the limit (0.3 % pool fee, no impact to speak of)
    strategy.evaluate(snapshot(weth_usdc(3_010.0, depth_weth=10**7), block=3), wallet)
    (buy,) = strategy.evaluate(snapshot(weth_usdc(2_999.0, depth_weth=10**7), block=4), wallet)
    assert buy.predicted_amount_out >= 5 * 10**18


def test_live_grid_skips_a_buy_it_cannot_pay_for() -> None:
    strategy = GridStrategy(live_params())
    strategy.on_start(None)
    strategy.evaluate(snapshot(weth_usdc(3_010.0), block=1), portfolio(usdc=1_000))
    assert strategy.evaluate(snapshot(weth_usdc(2_990.0), block=2), portfolio(usdc=1_000)) == []
    assert strategy.book is not None and strategy.book.inventory == 0 and not strategy.book.pending


def test_changed_grid_config_keeps_the_held_lots() -> None:
    strategy = GridStrategy(live_params())
    strategy.on_start(None)
    wallet = portfolio(weth=10, usdc=100_000)
    strategy.evaluate(snapshot(weth_usdc(3_010.0), block=1), wallet)
    (buy,) = strategy.evaluate(snapshot(weth_usdc(2_990.0), block=2), wallet)
    strategy.on_fill(fill_for(buy.id, USDC, WETH, buy.amount_in, buy.predicted_amount_out))
    saved = json.loads(json.dumps(strategy.state()))
    moved = GridStrategy(live_params(lower_price=2_800, upper_price=3_200))
    moved.on_start(saved)
    assert moved.evaluate(snapshot(weth_usdc(2_990.0), block=3), wallet) == []
    assert moved.book is not None and moved.book.inventory == buy.predicted_amount_out


def v3_weth_usdc(price: float, liquidity: int = 5 * 10**16) -> V3Pool:
    """A 0.3 % V3 pool with one full-range position, at ``price`` USDC per WETH."""
    # raw price token1/token0 in smallest units = price * 1e6 / 1e18
    sqrt_price_x96 = math.isqrt(int(price * 10**6) * 2**192 // 10**18)
    edge = 887_220  # the widest ticks on a 60 spacing
    return V3Pool.from_ticks(
        address="0x" + "b3" * 20,
        token0=WETH,
        token1=USDC,
        fee_pips=3000,
        tick_spacing=60,
        sqrt_price_x96=sqrt_price_x96,
        tick=get_tick_at_sqrt_ratio(sqrt_price_x96),
        liquidity=liquidity,
        ticks=[(-edge, liquidity), (edge, -liquidity)],
    )


def test_live_grid_on_a_v3_pool_uses_its_exact_quotes() -> None:
    strategy = GridStrategy(live_params(dex="uniswap_v3"))
    strategy.on_start(None)
    wallet = portfolio(weth=10, usdc=100_000)

    def market(pool: V3Pool, block: int) -> MarketSnapshot:
        base = snapshot(block=block)
        refs = {pool.address: PoolRef(pool.address, "uniswap_v3", "v3")}
        return replace(base, pools={pool.address: pool}, pool_refs=refs)

    assert strategy.evaluate(market(v3_weth_usdc(3_010.0), 1), wallet) == []
    pool = v3_weth_usdc(2_990.0)
    (buy,) = strategy.evaluate(market(pool, 2), wallet)
    assert buy.amount_in == pool.quote_exact_output(WETH, 5 * 10**17)
    assert buy.predicted_amount_out == pool.quote_exact_input(USDC, buy.amount_in)
    hop = buy.route[0]
    assert (hop.kind, hop.dex, hop.fee_pips) == ("v3", "uniswap_v3", 3000)


def test_a_stop_grid_started_outside_its_range_waits_for_the_price_to_come_in() -> None:
    b = book("stop")
    assert settle(b, 120.0, 0) == [] and not b.stopped  # above the range: every lot armed
    assert settle(b, 115.0, 1) == [] and not b.stopped
    assert settle(b, 104.0, 2) == [("buy", 3)]  # inside now: trading
    assert settle(b, 111.0, 3) == [("sell", 3)]
    assert b.stopped  # and leaving the range after that stops it


def buy_a_lot(strategy: GridStrategy, wallet: PortfolioView) -> tuple[Opportunity, Fill]:
    """Start the grid at 3010, buy lot 2 at 2990 and settle it: the buy and its fill."""
    strategy.on_start(None)
    strategy.evaluate(snapshot(weth_usdc(3_010.0), block=1), wallet)
    (buy,) = strategy.evaluate(snapshot(weth_usdc(2_990.0), block=2), wallet)
    bought = fill_for(buy.id, USDC, WETH, buy.amount_in, buy.predicted_amount_out)
    strategy.on_fill(bought)
    return buy, bought


def test_a_buy_voided_by_a_reorg_is_forgotten_and_bought_again_at_its_level() -> None:
    strategy = GridStrategy(live_params())
    wallet = portfolio(weth=10, usdc=100_000)
    buy, bought = buy_a_lot(strategy, wallet)
    assert strategy.book is not None and strategy.book.inventory == buy.predicted_amount_out
    # the agent restarts (state through JSON), then a reorg drops the buy's block
    restarted = GridStrategy(live_params())
    restarted.on_start(json.loads(json.dumps(strategy.state())))
    restarted.on_fill_changed(bought, None)
    assert restarted.book is not None and restarted.book.inventory == 0
    assert restarted.book.filled_levels == []
    # the lot is bought again while the price is still below its level, and nothing is sold
    (again,) = restarted.evaluate(snapshot(weth_usdc(2_990.0), block=3), wallet)
    assert (again.token_in, again.amount_in) == (USDC, buy.amount_in)
    assert restarted.evaluate(snapshot(weth_usdc(3_060.0), block=4), wallet) == []


def test_a_sell_voided_by_a_reorg_holds_the_lot_again_and_a_moved_one_corrects_its_profit() -> None:
    strategy = GridStrategy(live_params())
    wallet = portfolio(weth=10, usdc=100_000)
    buy, _ = buy_a_lot(strategy, wallet)
    (sell,) = strategy.evaluate(snapshot(weth_usdc(3_060.0), block=3), wallet)
    sold = fill_for(sell.id, WETH, USDC, sell.amount_in, sell.predicted_amount_out)
    strategy.on_fill(sold)
    assert strategy.book is not None and strategy.book.inventory == 0
    # moved to another block where it got 1 USDC less: the realised profit follows
    less = replace(sold, amount_out=sold.amount_out - 10**6)
    strategy.on_fill_changed(sold, less)
    assert strategy.book.realized_quote == less.amount_out - buy.amount_in
    # then voided: the lot is held again at its cost, nothing realised, and sold again
    strategy.on_fill_changed(less, None)
    assert strategy.book.inventory == buy.predicted_amount_out
    assert strategy.book.realized_quote == 0
    (again,) = strategy.evaluate(snapshot(weth_usdc(3_060.0), block=4), wallet)
    assert (again.token_in, again.amount_in) == (WETH, sell.amount_in)
