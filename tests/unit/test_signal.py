"""The signal strategy: queued webhook signals become exact swaps at the next snapshot, or are
dropped with a reason the console shows; the queue survives a restart."""

from __future__ import annotations

from agent.types import Fill, NotFilled
from strategies.signal import SignalParams, SignalStrategy, TradingSignal
from tests.unit.strategy_market import USDC, WETH, portfolio, snapshot, weth_usdc


def signal(
    action: str = "buy",
    *,
    amount: str | None = None,
    amount_usd: float | None = None,
    token: str = "WETH",
    max_notional_usd: float = 10_000.0,
) -> TradingSignal:
    return TradingSignal(
        webhook="tv",
        nonce="n-0001",
        action=action,  # type: ignore[arg-type]
        token=token,
        quote=None,
        amount=amount,
        amount_usd=amount_usd,
        max_notional_usd=max_notional_usd,
        received_at=1.0,
    )


def strategy() -> SignalStrategy:
    return SignalStrategy(SignalParams(enabled=True))


def test_a_usd_buy_spends_exactly_that_many_usdc_and_predicts_the_pool_quote() -> None:
    pool = weth_usdc(3_000.0)
    signals = strategy()
    assert signals.enqueue(signal("buy", amount_usd=1_500.0))
    (opportunity,) = signals.evaluate(snapshot(pool), portfolio(usdc=10_000))
    assert (opportunity.token_in, opportunity.token_out) == (USDC, WETH)
    assert opportunity.amount_in == 1_500 * 10**6
    assert opportunity.predicted_amount_out == pool.quote_exact_input(USDC, 1_500 * 10**6)
    assert opportunity.strategy == "signal"
    assert signals.evaluate(snapshot(pool, block=101), portfolio()) == []  # one-shot


def test_a_token_buy_receives_at_least_the_amount_and_a_token_sell_sells_exactly_it() -> None:
    pool = weth_usdc(3_000.0)
    signals = strategy()
    signals.enqueue(signal("buy", amount="0.25"))
    signals.enqueue(signal("sell", amount="0.1"))
    buy, sell = signals.evaluate(snapshot(pool), portfolio(weth=1, usdc=10_000))
    assert buy.token_out == WETH and buy.predicted_amount_out >= 25 * 10**16
    assert buy.amount_in == pool.quote_exact_output(WETH, 25 * 10**16)
    assert (sell.token_in, sell.amount_in) == (WETH, 10**17)
    assert sell.predicted_amount_out == pool.quote_exact_input(WETH, 10**17)


def test_signals_over_the_cap_beyond_the_balance_or_for_unknown_tokens_are_dropped() -> None:
    signals = strategy()
    signals.enqueue(signal("sell", amount="1", max_notional_usd=1_000.0))
    signals.enqueue(signal("buy", amount_usd=500.0))  # no USDC held
    signals.enqueue(signal("buy", amount_usd=500.0, token="PEPE"))
    opportunities = signals.evaluate(snapshot(weth_usdc(3_000.0)), portfolio(weth=1))
    assert opportunities == []
    reasons = [(o["status"], o["reason"]) for o in signals.state()["outcomes"]]
    assert reasons[0][0] == "dropped" and "max_notional_usd" in reasons[0][1]
    assert reasons[1][0] == "dropped" and reasons[1][1].startswith("insufficient USDC")
    assert reasons[2] == ("dropped", "unknown token PEPE")


def test_the_outcome_follows_the_fill_and_a_refusal_keeps_its_reason() -> None:
    signals = strategy()
    signals.enqueue(signal("buy", amount_usd=100.0))
    signals.enqueue(signal("buy", amount_usd=200.0))
    first, second = signals.evaluate(snapshot(weth_usdc(3_000.0)), portfolio(usdc=1_000_000))
    traded = Fill(
        intent_id=f"{first.id}-a",
        mode="fork",
        tx_hash="0x" + "ab" * 32,
        token_in=USDC,
        token_out=WETH,
        amount_in=first.amount_in,
        amount_out=first.predicted_amount_out,
        profit=0,
        predicted_amount_in=first.amount_in,
        predicted_amount_out=first.predicted_amount_out,
        predicted_profit=0,
        block_number=100,
        opportunity_id=first.id,
    )
    signals.on_fill(traded)
    signals.on_fill(
        NotFilled(
            intent_id=second.id,
            opportunity_id=second.id,
            token_in=USDC,
            token_out=WETH,
            predicted_amount_in=second.amount_in,
            predicted_amount_out=second.predicted_amount_out,
            reason="max_trade_usd",
        )
    )
    outcomes = signals.state()["outcomes"]
    assert outcomes[0]["status"] == "filled"
    assert outcomes[0]["amount_out"] == str(first.predicted_amount_out)
    assert (outcomes[1]["status"], outcomes[1]["reason"]) == ("not filled", "max_trade_usd")
    assert signals.pending == {}
    # a reorg voids the fill: the outcome no longer says it traded
    signals.on_fill_changed(traded, None)
    voided = signals.state()["outcomes"][0]
    assert (voided["status"], voided["reason"]) == (
        "reorged out",
        "block 100 was replaced: nothing traded",
    )
    assert signals.evaluate(snapshot(weth_usdc(3_000.0)), portfolio(usdc=1_000_000)) == []


def test_queued_signals_survive_a_restart_and_the_queue_is_bounded() -> None:
    signals = SignalStrategy(SignalParams(enabled=True, max_queued=2))
    assert signals.enqueue(signal("buy", amount_usd=100.0))
    assert signals.enqueue(signal("buy", amount_usd=200.0))
    assert not signals.enqueue(signal("buy", amount_usd=300.0))
    restarted = SignalStrategy(SignalParams(enabled=True, max_queued=2))
    restarted.on_start(signals.state())
    amounts = [
        o.amount_in
        for o in restarted.evaluate(snapshot(weth_usdc(3_000.0)), portfolio(usdc=1_000_000))
    ]
    assert amounts == [100 * 10**6, 200 * 10**6]
