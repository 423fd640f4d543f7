"""Conditional orders: when each kind fires on the pool price, what a fill or a failure does to
it, OCO groups, and the journal rows the CLI and Telegram write (real SQLite and PostgreSQL,
migrated)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from agent.app.orders import OrderRequest, order_command, place_order, validate
from agent.errors import OrderRejected
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.types import ConditionalOrder, Fill, NotFilled, Opportunity, OrderUpdate
from strategies.orders import OrdersParams, OrdersStrategy
from tests.unit.strategy_market import USDC, WETH, portfolio, snapshot, weth_usdc


def order(order_id: int, kind: str, side: str = "sell", **fields: object) -> ConditionalOrder:
    values: dict[str, object] = {"amount": Decimal("0.5"), "pair": "WETH/USDC"}
    values.update(fields)
    return ConditionalOrder(order_id, kind, side, **values)  # type: ignore[arg-type]


def strategy(*orders: ConditionalOrder, max_attempts: int = 3) -> OrdersStrategy:
    s = OrdersStrategy(OrdersParams(enabled=True, max_attempts=max_attempts))
    s.on_start(None)
    s.load_orders(orders)
    return s


def at(s: OrdersStrategy, price: float, block: int = 100) -> list[Opportunity]:
    return s.evaluate(snapshot(weth_usdc(price), block=block), portfolio(weth=10, usdc=50_000))


def filled(opportunity: Opportunity) -> Fill:
    return Fill(
        intent_id=f"{opportunity.id}-abc123",
        mode="fork",
        tx_hash="0x" + "ab" * 32,
        token_in=opportunity.token_in,
        token_out=opportunity.token_out,
        amount_in=opportunity.amount_in,
        amount_out=opportunity.predicted_amount_out,
        profit=0,
        predicted_amount_in=opportunity.amount_in,
        predicted_amount_out=opportunity.predicted_amount_out,
        predicted_profit=0,
        block_number=opportunity.block + 1,
        opportunity_id=opportunity.id,
    )


def not_filled(opportunity: Opportunity, reason: str = "slippage") -> NotFilled:
    return NotFilled(
        intent_id=opportunity.id,
        opportunity_id=opportunity.id,
        token_in=opportunity.token_in,
        token_out=opportunity.token_out,
        predicted_amount_in=opportunity.amount_in,
        predicted_amount_out=opportunity.predicted_amount_out,
        reason=reason,
    )


def statuses(updates: list[OrderUpdate]) -> list[tuple[int, str | None]]:
    return [(u.order_id, u.status) for u in updates if u.status is not None]


def test_stop_loss_sells_the_exact_amount_once_the_price_falls_to_its_trigger() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900)))
    assert at(s, 2_950) == []
    (sell,) = at(s, 2_899, block=101)
    assert (sell.token_in, sell.token_out, sell.amount_in) == (WETH, USDC, 5 * 10**17)
    pool = weth_usdc(2_899)
    assert sell.predicted_amount_out == pool.quote_exact_input(WETH, 5 * 10**17)
    assert statuses(s.order_updates()) == [(1, "triggered")]
    assert at(s, 2_800, block=102) == []  # in flight: never proposed twice
    s.on_fill(filled(sell))
    assert statuses(s.order_updates()) == [(1, "filled")]
    assert s.orders == {}


@pytest.mark.parametrize(
    ("kind", "side", "trigger", "quiet", "fire"),
    [
        ("take_profit", "sell", 3_100, 3_050, 3_101),
        ("limit", "buy", 2_900, 2_950, 2_850),
        ("stop_loss", "buy", 3_100, 3_050, 3_101),
    ],
)
def test_each_kind_fires_on_its_side_of_the_trigger(
    kind: str, side: str, trigger: int, quiet: float, fire: float
) -> None:
    amount = Decimal("0.5") if side == "sell" else Decimal(1_000)
    s = strategy(order(1, kind, side, trigger_price=Decimal(trigger), amount=amount))
    assert at(s, quiet) == []
    (trade,) = at(s, fire, block=101)
    spent = (WETH, 5 * 10**17) if side == "sell" else (USDC, 1_000 * 10**6)
    assert (trade.token_in, trade.amount_in) == spent


def test_a_limit_sell_waits_until_the_execution_price_after_fee_reaches_the_limit() -> None:
    s = strategy(order(1, "limit", trigger_price=Decimal(3_000)))
    assert at(s, 3_001) == []  # mid above the limit, but 0.3% fee puts the fill below it
    (sell,) = at(s, 3_020, block=101)
    executed = sell.predicted_amount_out / 10**6 / (sell.amount_in / 10**18)
    assert executed >= 3_000


def test_trailing_stop_follows_the_peak_and_fires_on_the_retrace() -> None:
    s = strategy(order(1, "trailing_stop", trail_distance=Decimal(100)))
    for block, price in enumerate([3_000, 3_200, 3_150, 3_300, 3_220], start=100):
        assert at(s, price, block) == []
    peaks = [u.peak for u in s.order_updates() if u.peak is not None]
    assert peaks == [3_000, 3_200, 3_300]  # only a new high moves the stop
    (sell,) = at(s, 3_199, block=110)  # 101 under the 3,300 peak
    assert sell.amount_in == 5 * 10**17


def test_trailing_stop_by_percent_and_its_peak_survives_a_reload() -> None:
    s = strategy(order(1, "trailing_stop", trail_pct=Decimal(5)))
    assert at(s, 3_000) == [] and at(s, 3_400, block=101) == []
    # a new process: the journal row carries the peak the first one recorded
    again = strategy(order(1, "trailing_stop", trail_pct=Decimal(5), peak=3_400.0))
    assert at(again, 3_240, block=102) == []  # 4.7% off the peak
    assert len(at(again, 3_229, block=103)) == 1  # 5.03% off


def test_oco_fires_one_sibling_and_its_fill_ends_the_other() -> None:
    take = order(1, "take_profit", trigger_price=Decimal(3_000), oco_group=1)
    stop = order(2, "stop_loss", trigger_price=Decimal(3_100), oco_group=1)
    s = strategy(take, stop)
    (first,) = at(s, 3_050)  # both conditions hold: only the first of the group fires
    assert first.id.startswith("order1-")
    s.on_fill(filled(first))
    assert statuses(s.order_updates()) == [(1, "triggered"), (1, "filled")]
    # the journal has not cancelled #2 yet (updates are written after the tick): still no fire
    s.load_orders([stop])
    assert at(s, 3_050, block=101) == []


def test_a_trade_that_did_not_fill_re_arms_then_fails_after_max_attempts() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900)), max_attempts=2)
    (first,) = at(s, 2_850)
    s.on_fill(not_filled(first, "refused: max_trade_usd"))
    updates = s.order_updates()
    assert statuses(updates) == [(1, "triggered"), (1, "pending")]
    assert "max_trade_usd" in updates[-1].reason
    (second,) = at(s, 2_850, block=101)
    assert second.id != first.id
    s.on_fill(not_filled(second))
    last = s.order_updates()[-1]
    assert (last.status, last.reason) == ("failed", "2 trades did not fill; last: slippage")
    assert at(s, 2_850, block=102) == []


def test_a_paused_agent_keeps_the_order_armed_without_spending_attempts() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900)), max_attempts=1)
    for block in range(100, 105):
        (refused,) = at(s, 2_850, block)
        s.on_fill(not_filled(refused, "paused"))
    assert s.order_updates()[-1].reason == "waiting: paused"
    (proposed,) = at(s, 2_850, block=105)  # resumed: it trades
    s.on_fill(filled(proposed))
    assert statuses(s.order_updates())[-1] == (1, "filled")


def test_an_order_on_a_token_the_agent_does_not_know_fails_with_the_reason() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900), pair="PEPE/USDC"))
    assert at(s, 2_850) == []
    (update,) = s.order_updates()
    assert (update.status, update.reason) == (
        "failed",
        "PEPE is not one of the agent's tokens (market.tokens)",
    )


def test_an_order_the_wallet_cannot_fund_fails_with_the_reason() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900), amount=Decimal(11)))
    assert at(s, 2_850) == []
    (update,) = s.order_updates()
    assert update.status == "failed" and "holds 10 WETH" in update.reason


def test_an_order_left_triggered_by_an_earlier_process_fails_instead_of_trading_twice() -> None:
    s = strategy(order(1, "stop_loss", trigger_price=Decimal(2_900), status="triggered"))
    assert at(s, 2_850) == []
    (update,) = s.order_updates()
    assert update.status == "failed" and "in flight" in update.reason


def test_validation_names_the_wrong_field() -> None:
    def refused(**fields: object) -> str:
        values: dict[str, object] = {
            "kind": "stop-loss",
            "side": "sell",
            "pair": "WETH/USDC",
            "amount": "1",
            "price": "2700",
        }
        values.update(fields)
        with pytest.raises(OrderRejected) as caught:
            validate(OrderRequest(**values))  # type: ignore[arg-type]
        return str(caught.value)

    assert "kind" in refused(kind="market")
    assert "side" in refused(side="short")
    assert "amount" in refused(amount="-1")
    assert "price" in refused(price=None)
    assert "pair" in refused(pair="WETH")
    assert "trail" in refused(kind="trailing-stop", price=None)
    assert "below 100" in refused(kind="trailing-stop", price=None, trail="100%")
    ok = validate(OrderRequest("trailing-stop", "sell", "WETH/USDC", "1", trail="2.5%"))
    assert (ok.kind, ok.trail_pct, ok.trail_distance) == ("trailing_stop", Decimal("2.5"), None)


@pytest.fixture(params=["sqlite", "postgresql"])
async def journal(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Journal]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'journal.db'}"
    if request.param == "postgresql":  # a real PostgreSQL server (tests/pg.py)
        url = request.getfixturevalue("pg_database")
    engine = await init_db(url)
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def test_journal_fill_cancels_the_oco_sibling_and_a_cancel_stands(journal: Journal) -> None:
    take = await place_order(
        journal, OrderRequest("take-profit", "sell", "WETH/USDC", "0.5", "3300"), "cli"
    )
    stop = await place_order(
        journal,
        OrderRequest("stop-loss", "sell", "WETH/USDC", "0.5", "2700", oco_with=take.id),
        "cli",
    )
    assert (await journal.get_order(take.id)).oco_group == take.id == stop.oco_group
    await journal.apply_order_updates(
        [
            OrderUpdate(take.id, status="triggered", reason="price 3301"),
            OrderUpdate(take.id, status="filled", reason="done"),
        ]
    )
    sibling = await journal.get_order(stop.id)
    assert (sibling.status, sibling.reason) == ("cancelled", f"OCO: order #{take.id} filled")
    assert await journal.list_orders(active_only=True) == []

    trail = await place_order(
        journal, OrderRequest("trailing-stop", "sell", "WETH/USDC", "1", trail="50"), "cli"
    )
    await journal.cancel_order(trail.id, "cancelled from the CLI")
    # a late decision of the strategy does not revive an order the operator cancelled
    await journal.apply_order_updates([OrderUpdate(trail.id, status="triggered", peak=3_500.0)])
    after = await journal.get_order(trail.id)
    assert (after.status, after.peak) == ("cancelled", None)
    with pytest.raises(OrderRejected, match="cancelled"):
        await journal.cancel_order(trail.id, "again")


async def test_telegram_words_place_list_and_cancel(journal: Journal) -> None:
    placed = await order_command(journal, "add stop-loss sell 0.5 WETH/USDC 2700", "chat 1")
    assert placed.startswith("placed #1 stop-loss sell 0.5 WETH on WETH/USDC at 2700: pending")
    trail = await order_command(journal, "add trailing-stop sell 1 WETH/USDC trail 2% oco 1", "c")
    assert "trail 2%" in trail and "OCO group 1" in trail
    listed = await order_command(journal, "list", "chat 1")
    assert listed.count("\n") == 1 and "#2 trailing-stop" in listed
    assert (await order_command(journal, "cancel 1", "chat 1")).startswith("cancelled #1")
    refused = await order_command(journal, "add stop-loss sell lots WETH/USDC 2700", "chat 1")
    assert refused.startswith("order refused: amount must be a number")
    assert "/order add" in await order_command(journal, "", "chat 1")
    orders = await journal.list_orders()
    assert [(o.id, o.status) for o in orders] == [(1, "cancelled"), (2, "pending")]


def test_order_commands_from_the_shell(tmp_path: Path) -> None:
    """`defi-agent order add|list|cancel` as a process: exit codes, messages, no tracebacks."""
    from tests.unit.test_cli import init_for_local_devnet, run

    config = init_for_local_devnet(tmp_path)
    added = run(
        *("order", "add", "stop-loss", "sell", "0.5", "WETH/USDC", "--price", "2700"),
        *("--config", str(config)),
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "placed #1 stop-loss sell 0.5 WETH on WETH/USDC at 2700: pending"
    assert "[strategies.orders] is not enabled" in added.stderr  # the template leaves it off

    bad = run("order", "add", "stop-loss", "sell", "0.5", "WETH", "--price", "1", cwd=tmp_path)
    assert bad.returncode == 2 and "pair 'WETH'" in bad.stderr and "Traceback" not in bad.stderr

    listed = run("order", "list", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        "#1 stop-loss sell 0.5 WETH on WETH/USDC at 2700: pending"
    ]
    assert run("order", "cancel", "1", "--config", str(config), cwd=tmp_path).returncode == 0
    again = run("order", "cancel", "1", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 2 and "order #1 is cancelled" in again.stderr
    assert run("order", "list", cwd=tmp_path).stdout.strip() == "no active orders"
    everything = run("order", "list", "--all", cwd=tmp_path).stdout
    assert "cancelled - cancelled from the CLI" in everything


async def test_an_order_whose_fill_a_reorg_voided_fails_and_never_fires_again(
    journal: Journal,
) -> None:
    placed = await place_order(
        journal, OrderRequest("stop-loss", "sell", "WETH/USDC", "0.5", "2900"), "cli"
    )
    s = strategy(*await journal.list_orders(active_only=True))
    (sell,) = at(s, 2_899, block=101)
    fill = filled(sell)
    s.on_fill(fill)
    await journal.apply_order_updates(s.order_updates())
    assert (await journal.get_order(placed.id)).status == "filled"
    # a late ordinary decision never turns a filled order into anything else
    await journal.apply_order_updates([OrderUpdate(placed.id, status="failed", reason="late")])
    assert (await journal.get_order(placed.id)).status == "filled"

    s.on_fill_changed(fill, None)
    await journal.apply_order_updates(s.order_updates())
    voided = await journal.get_order(placed.id)
    assert voided.status == "failed" and "undone by a reorg" in voided.reason
    # not armed again: the price is still through its trigger and nothing is proposed
    s.load_orders(await journal.list_orders(active_only=True))
    assert at(s, 2_850, block=103) == []
