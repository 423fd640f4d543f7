"""The portfolio along a day of trading: equity, peak, drawdown and realised PnL as an operator
reads them in /balance, /pnl and the risk gate, through fills and price moves."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from agent.market.portfolio import NATIVE_TOKEN, Portfolio
from agent.market.snapshot import MarketSnapshot
from agent.types import Fill, GasPrice, Token

WETH = Token("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18)
USDC = Token("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USDC", 6)
DAI = Token("0x6B175474E89094C44Da98b954EedeAC495271d0F", "DAI", 18)
TOKENS = {t.address: t for t in (WETH, USDC, DAI)}
NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()
NEXT_DAY = datetime(2026, 11, 22, 0, 0, 1, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def market(weth_usd: float, *, native_usd: float | None = None) -> MarketSnapshot:
    prices = {USDC.address: 1.0, DAI.address: 1.0}
    if weth_usd:
        prices[WETH.address] = weth_usd
    return MarketSnapshot(
        block=1,
        timestamp=NOON,
        chain_id=31337,
        tokens=TOKENS,
        pools={},
        pool_refs={},
        gas=GasPrice(10**9, 10**9, 10**9, 3 * 10**9, 1),
        native_price_usd=weth_usd if native_usd is None else native_usd,
        prices_usd=prices,
    )


def fill(
    token_in: Token,
    amount_in: str,
    token_out: Token,
    amount_out: str,
    gas_eth: str = "0",
    intent_id: str = "i",
) -> Fill:
    amount_in_units = token_in.to_units(amount_in)
    amount_out_units = token_out.to_units(amount_out)
    profit = amount_out_units - amount_in_units if token_in == token_out else 0
    return Fill(
        intent_id=intent_id,
        mode="paper",
        tx_hash=None,
        token_in=token_in.address,
        token_out=token_out.address,
        amount_in=amount_in_units,
        amount_out=amount_out_units,
        profit=profit,
        predicted_amount_in=amount_in_units,
        predicted_amount_out=amount_out_units,
        predicted_profit=profit,
        gas_cost_wei=WETH.to_units(gas_eth),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def portfolio(clock: Clock) -> Portfolio:
    return Portfolio(
        TOKENS,
        {USDC.address: USDC.to_units("10000"), WETH.address: WETH.to_units("2")},
        clock=clock,
    )


def test_a_day_of_fills_and_price_moves(portfolio: Portfolio, clock: Clock) -> None:
    start = portfolio.mark(market(3000))
    assert start.equity_usd == pytest.approx(16_000)
    assert start.peak_equity_usd == pytest.approx(16_000)
    assert start.drawdown_pct == 0.0
    assert dict(start.exposure_usd) == pytest.approx({WETH.address: 6000.0})  # USDC is cash

    # Buy 0.99 WETH for 3000 USDC (30 USD of fees and impact) paying 0.001 ETH of gas.
    booking = portfolio.apply_fill(fill(USDC, "3000", WETH, "0.99", gas_eth="0.001"))
    assert booking.realized_pnl_usd == pytest.approx(-33.0)
    assert booking.gas_cost_usd == pytest.approx(3.0)
    after_buy = portfolio.view()
    assert after_buy.balances == {
        USDC.address: USDC.to_units("7000"),
        WETH.address: WETH.to_units("2.99"),
        NATIVE_TOKEN: -(10**15),
    }
    assert all(isinstance(v, int) for v in after_buy.balances.values())
    assert after_buy.equity_usd == pytest.approx(7000 + 2.99 * 3000 - 3)
    assert after_buy.realized_pnl_today_usd == pytest.approx(-33.0)

    # ETH falls 10 %: equity falls, the peak stays, drawdown shows.
    dip = portfolio.mark(market(2700))
    assert dip.equity_usd == pytest.approx(7000 + 2.99 * 2700 - 2.7)
    assert dip.peak_equity_usd == pytest.approx(16_000)
    assert dip.drawdown_pct == pytest.approx((16_000 - dip.equity_usd) / 16_000 * 100)
    assert dip.realized_pnl_today_usd == pytest.approx(-33.0)  # unrealised until sold

    # Sell 1 WETH at 2700: average cost was 3000, so 300 USD of loss is realised.
    booking = portfolio.apply_fill(fill(WETH, "1", USDC, "2700"))
    assert booking.realized_pnl_usd == pytest.approx(-300.0)
    assert portfolio.realized_pnl_today_usd == pytest.approx(-333.0)
    assert portfolio.equity_usd == pytest.approx(dip.equity_usd)  # a fair swap moves no equity

    # ETH rallies to 4000: a new peak, no drawdown.
    rally = portfolio.mark(market(4000))
    assert rally.equity_usd == pytest.approx(9700 + 1.99 * 4000 - 4)
    assert rally.peak_equity_usd == pytest.approx(rally.equity_usd)
    assert rally.drawdown_pct == 0.0

    # An arbitrage cycle realises its profit net of gas: 0.01 WETH - 0.002 ETH at 4000.
    booking = portfolio.apply_fill(fill(WETH, "1", WETH, "1.01", gas_eth="0.002"))
    assert booking.realized_pnl_usd == pytest.approx(32.0)
    assert portfolio.balances[WETH.address] == WETH.to_units("2")
    assert portfolio.realized_pnl_today_usd == pytest.approx(-301.0)
    assert portfolio.peak_equity_usd == pytest.approx(9700 + 2 * 4000 - 12)

    # A new UTC day starts with a clean daily PnL; peak and balances carry on.
    clock.now = NEXT_DAY
    tomorrow = portfolio.view()
    assert tomorrow.realized_pnl_today_usd == 0.0
    assert tomorrow.peak_equity_usd == pytest.approx(9700 + 2 * 4000 - 12)


def test_a_missing_price_keeps_the_last_one_instead_of_faking_a_crash(
    portfolio: Portfolio,
) -> None:
    portfolio.mark(market(3000))
    gap = portfolio.mark(market(0, native_usd=0))  # the WETH feed is down this tick
    assert gap.equity_usd == pytest.approx(16_000)
    assert gap.drawdown_pct == 0.0


def test_unpriced_holdings_are_reported_and_not_valued(clock: Clock) -> None:
    mystery = "0x" + "12" * 20
    portfolio = Portfolio(TOKENS, {mystery: 5, USDC.address: USDC.to_units("1")}, clock=clock)
    view = portfolio.mark(market(3000))
    assert view.equity_usd == pytest.approx(1.0)
    assert portfolio.unpriced_tokens == {mystery}


def test_stablecoin_swaps_realise_their_cost_and_carry_no_exposure(portfolio: Portfolio) -> None:
    portfolio.mark(market(3000))
    booking = portfolio.apply_fill(fill(USDC, "1000", DAI, "999.5"))
    assert booking.realized_pnl_usd == pytest.approx(-0.5)
    assert DAI.address not in portfolio.view().exposure_usd


def test_live_refresh_deposit_is_not_profit(portfolio: Portfolio) -> None:
    portfolio.mark(market(3000))
    portfolio.refresh({WETH.address: WETH.to_units("3"), NATIVE_TOKEN: WETH.to_units("0.5")})
    view = portfolio.view()
    assert view.equity_usd == pytest.approx(10_000 + 3 * 3000 + 0.5 * 3000)
    assert view.realized_pnl_today_usd == 0.0
    assert view.exposure_usd[NATIVE_TOKEN] == pytest.approx(1500.0)
    # The deposited WETH is carried at its market value: selling it at 3000 realises nothing.
    assert portfolio.apply_fill(fill(WETH, "3", USDC, "9000")).realized_pnl_usd == pytest.approx(
        0.0
    )


@pytest.mark.parametrize("refresh_first", [False, True], ids=["book-then-read", "read-then-book"])
def test_live_fill_is_booked_once_whichever_comes_first(
    portfolio: Portfolio, refresh_first: bool
) -> None:
    portfolio.mark(market(3000))
    sold = fill(WETH, "1", USDC, "3100", gas_eth="0.001")
    on_chain = {
        WETH.address: WETH.to_units("1"),
        USDC.address: USDC.to_units("13100"),
        NATIVE_TOKEN: WETH.to_units("0.049"),
    }
    if refresh_first:
        portfolio.refresh(on_chain)
    booking = portfolio.book_fill(sold)
    if not refresh_first:
        portfolio.refresh(on_chain)
    assert booking.realized_pnl_usd == pytest.approx(100.0 - 3.0)
    assert portfolio.realized_pnl_today_usd == pytest.approx(97.0)
    # Balances are the chain's, never moved a second time by the fill.
    assert portfolio.balances[WETH.address] == WETH.to_units("1")
    assert portfolio.equity_usd == pytest.approx(13_100 + 3000 + 0.049 * 3000)
    # The next tick reads the same balances: nothing changes, nothing is booked.
    portfolio.refresh(on_chain)
    assert portfolio.realized_pnl_today_usd == pytest.approx(97.0)


def test_live_buy_then_sell_realises_against_the_average_cost(portfolio: Portfolio) -> None:
    portfolio.mark(market(3000))  # 2 WETH carried at 3000
    portfolio.refresh({WETH.address: WETH.to_units("3"), USDC.address: USDC.to_units("6900")})
    portfolio.book_fill(fill(USDC, "3100", WETH, "1"))  # paid 100 over market: realised -100
    portfolio.mark(market(3300))
    portfolio.refresh({WETH.address: WETH.to_units("0"), USDC.address: USDC.to_units("16800")})
    booking = portfolio.book_fill(fill(WETH, "3", USDC, "9900"))
    assert booking.realized_pnl_usd == pytest.approx(9900 - 3 * 3000)
    assert portfolio.realized_pnl_today_usd == pytest.approx(-100 + 900)


def test_state_survives_a_restart_the_same_day_only(portfolio: Portfolio, clock: Clock) -> None:
    portfolio.mark(market(3000))
    portfolio.apply_fill(fill(WETH, "1", USDC, "2900"))
    portfolio.mark(market(2500))
    saved = portfolio.state()

    restarted = Portfolio(TOKENS, clock=clock)
    restarted.restore(saved)
    restarted.refresh(dict(portfolio.balances))  # paper: Journal.paper_balances(); live: chain
    view = restarted.mark(market(2500))
    assert view.peak_equity_usd == pytest.approx(16_000)
    assert view.realized_pnl_today_usd == pytest.approx(-100.0)
    assert view.drawdown_pct == pytest.approx(portfolio.drawdown_pct)
    # The cost basis came back too: selling the last WETH realises the same PnL as before.
    sell = fill(WETH, "1", USDC, "2500")
    assert restarted.apply_fill(sell).realized_pnl_usd == pytest.approx(
        portfolio.apply_fill(sell).realized_pnl_usd
    )
    assert restarted.realized_pnl_today_usd == pytest.approx(-600.0)

    clock.now = NEXT_DAY
    next_day = Portfolio(TOKENS, clock=clock)
    next_day.restore(saved)
    assert next_day.realized_pnl_today_usd == 0.0


def test_reset_peak_measures_drawdown_afresh(portfolio: Portfolio) -> None:
    portfolio.mark(market(3000))
    assert portfolio.mark(market(2000)).drawdown_pct > 10
    portfolio.reset_peak()
    assert portfolio.view().drawdown_pct == 0.0
    assert portfolio.view().peak_equity_usd == pytest.approx(10_000 + 2 * 2000)


def test_balances_must_be_integers(clock: Clock) -> None:
    with pytest.raises(TypeError):
        Portfolio(TOKENS, {WETH.address: 1.5}, clock=clock)  # type: ignore[dict-item]
    portfolio = Portfolio(TOKENS, clock=clock)
    with pytest.raises(TypeError):
        portfolio.refresh({WETH.address: 2.0})  # type: ignore[dict-item]


def test_view_is_a_snapshot_not_a_live_reference(portfolio: Portfolio) -> None:
    before = portfolio.mark(market(3000))
    portfolio.apply_fill(fill(USDC, "100", WETH, "0.03"))
    assert before.balances[USDC.address] == USDC.to_units("10000")
    with pytest.raises(TypeError):
        before.balances[USDC.address] = 0  # type: ignore[index]
    assert dataclasses.is_dataclass(before)


def test_a_pending_fill_voided_or_moved_by_a_reorg_leaves_or_corrects_todays_pnl(
    portfolio: Portfolio, clock: Clock
) -> None:
    portfolio.mark(market(3000))
    final = dataclasses.replace(fill(WETH, "1", WETH, "1.01"), intent_id="final")
    pending = dataclasses.replace(
        fill(WETH, "1", WETH, "1.02", gas_eth="0.001"), intent_id="pending", finality="pending"
    )
    portfolio.book_fill(final)  # +30 USD
    assert portfolio.book_fill(pending).realized_pnl_usd == pytest.approx(57.0)
    assert portfolio.realized_pnl_today_usd == pytest.approx(87.0)

    # moved: the booking taken out, the fill booked again as its new receipt has it
    assert portfolio.unbook_fill("pending") == pytest.approx(57.0)
    portfolio.book_fill(dataclasses.replace(pending, amount_out=WETH.to_units("1.015")))
    assert portfolio.realized_pnl_today_usd == pytest.approx(30.0 + 42.0)
    # voided: it counts nowhere; a final fill cannot be unbooked
    assert portfolio.unbook_fill("pending") == pytest.approx(42.0)
    assert portfolio.unbook_fill("final") == 0.0
    assert portfolio.realized_pnl_today_usd == pytest.approx(30.0)

    # what a pending fill booked survives a restart the same day, not the next
    portfolio.book_fill(pending)
    saved = portfolio.state()
    restarted = Portfolio(TOKENS, clock=clock)
    restarted.restore(saved)
    assert restarted.unbook_fill("pending") == pytest.approx(57.0)
    assert restarted.realized_pnl_today_usd == pytest.approx(30.0)
    confirmed = Portfolio(TOKENS, clock=clock)
    confirmed.restore(saved)
    confirmed.confirm_fill("pending")
    assert confirmed.unbook_fill("pending") == 0.0
    clock.now = NEXT_DAY
    assert portfolio.unbook_fill("pending") == 0.0  # yesterday's books are closed
    assert portfolio.realized_pnl_today_usd == 0.0
