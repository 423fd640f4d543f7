"""Whale-follow: sizing, delay, filters, sentiment gate, exits and persisted positions."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.types import Fill, NotFilled, WhaleTrade
from strategies.whale_follow import WhaleFollowParams, WhaleFollowStrategy
from tests.unit.strategy_market import (
    NOW,
    UNI,
    UNI_USDC_POOL,
    USDC,
    portfolio,
    sentiment_reading,
    snapshot,
    uni_usdc,
)

WHALE = "0x" + "77" * 20
OTHER = "0x" + "88" * 20


def whale_buy(
    usdc: int, block: int = 100, wallet: str = WHALE, tx: str = "0x" + "ab" * 32
) -> WhaleTrade:
    """The whale spends ``usdc`` whole USDC on UNI at ``block``."""
    return WhaleTrade(wallet, USDC, UNI, usdc * 10**6, usdc * 10**17, UNI_USDC_POOL, tx, block)


def params(**overrides: object) -> WhaleFollowParams:
    values: dict[str, object] = {
        "enabled": True,
        "wallets": [WHALE],
        "size_fraction": 0.05,
        "max_trade_usd": 10_000.0,
        "min_whale_trade_usd": 50_000.0,
        "max_delay_blocks": 2,
        "min_sentiment": -0.2,
        "take_profit_pct": 5.0,
        "stop_loss_pct": 3.0,
        "max_hold_blocks": 50,
        "max_hold_s": None,
    }
    values.update(overrides)
    return WhaleFollowParams.model_validate(values)


def settled(
    opportunity_id: str, token_in: str, token_out: str, amount_in: int, out: int, block: int
) -> Fill:
    return Fill(
        intent_id=f"{opportunity_id}-0f0f0f",
        mode="paper",
        tx_hash="0x" + "cd" * 32,
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in,
        amount_out=out,
        profit=0,
        predicted_amount_in=amount_in,
        predicted_amount_out=out,
        predicted_profit=0,
        block_number=block,
    )


def test_follow_is_a_fraction_of_the_whale_with_exact_pool_output() -> None:
    strategy = WhaleFollowStrategy(params())
    pool = uni_usdc(10.0)
    (follow,) = strategy.evaluate(
        snapshot(pool, block=101, whale_trades=(whale_buy(100_000),)), portfolio(usdc=50_000)
    )
    assert (follow.token_in, follow.token_out) == (USDC, UNI)
    assert follow.amount_in == 5_000 * 10**6  # 5 % of 100,000 USDC
    assert follow.predicted_amount_out == pool.quote_exact_input(USDC, follow.amount_in)
    assert follow.route[0].pool == UNI_USDC_POOL


def test_size_is_capped_by_max_trade_usd_and_by_our_balance() -> None:
    trade = (whale_buy(1_000_000),)  # 5 % would be 50,000 USDC
    capped = WhaleFollowStrategy(params(max_trade_usd=2_000.0))
    (follow,) = capped.evaluate(
        snapshot(uni_usdc(10.0), block=100, whale_trades=trade), portfolio(usdc=100_000)
    )
    assert follow.amount_in == 2_000 * 10**6
    poor = WhaleFollowStrategy(params())
    (follow,) = poor.evaluate(
        snapshot(uni_usdc(10.0), block=100, whale_trades=trade), portfolio(usdc=700)
    )
    assert follow.amount_in == 700 * 10**6


def test_trades_older_than_the_delay_are_skipped_and_none_is_followed_twice() -> None:
    strategy = WhaleFollowStrategy(params(max_delay_blocks=2))
    wallet = portfolio(usdc=50_000)
    late = snapshot(uni_usdc(10.0), block=103, whale_trades=(whale_buy(100_000, block=100),))
    assert strategy.evaluate(late, wallet) == []
    in_time = snapshot(
        uni_usdc(10.0),
        block=102,
        whale_trades=(whale_buy(100_000, block=100, tx="0x" + "01" * 32),),
    )
    assert len(strategy.evaluate(in_time, wallet)) == 1
    again = snapshot(uni_usdc(10.0), block=102, whale_trades=in_time.whale_trades)
    assert strategy.evaluate(again, wallet) == []  # the same whale trade in the next snapshot


@pytest.mark.parametrize(
    ("overrides", "trade"),
    [
        ({}, whale_buy(20_000)),  # below min_whale_trade_usd
        ({}, whale_buy(100_000, wallet=OTHER)),  # not a followed wallet
        ({"token_allowlist": ["WETH"]}, whale_buy(100_000)),  # UNI not allowed
    ],
)
def test_small_unwatched_or_unlisted_trades_are_not_followed(
    overrides: dict[str, object], trade: WhaleTrade
) -> None:
    strategy = WhaleFollowStrategy(params(**overrides))
    market = snapshot(uni_usdc(10.0), block=100, whale_trades=(trade,))
    assert strategy.evaluate(market, portfolio(usdc=50_000)) == []


def test_allowlist_by_symbol_admits_the_token() -> None:
    strategy = WhaleFollowStrategy(params(token_allowlist=["uni"]))
    market = snapshot(uni_usdc(10.0), block=100, whale_trades=(whale_buy(100_000),))
    assert len(strategy.evaluate(market, portfolio(usdc=50_000))) == 1


def test_sentiment_gate_blocks_buys_on_fresh_bad_sentiment_only() -> None:
    trade = (whale_buy(100_000),)
    bearish = {UNI: sentiment_reading(-0.6, age_s=60)}
    stale_bearish = {UNI: sentiment_reading(-0.6, age_s=7_200)}
    gated = WhaleFollowStrategy(params())
    market = snapshot(uni_usdc(10.0), block=100, whale_trades=trade, sentiment=bearish)
    assert gated.evaluate(market, portfolio(usdc=50_000)) == []
    stale = WhaleFollowStrategy(params())
    market = snapshot(uni_usdc(10.0), block=100, whale_trades=trade, sentiment=stale_bearish)
    assert len(stale.evaluate(market, portfolio(usdc=50_000))) == 1  # stale -> neutral 0.0


def enter(strategy: WhaleFollowStrategy, block: int = 100) -> tuple[int, int]:
    """Follow one whale buy and settle it; returns (USDC paid, UNI received)."""
    pool = uni_usdc(10.0)
    (follow,) = strategy.evaluate(
        snapshot(pool, block=block, whale_trades=(whale_buy(100_000, block=block),)),
        portfolio(usdc=50_000),
    )
    strategy.on_fill(
        settled(follow.id, USDC, UNI, follow.amount_in, follow.predicted_amount_out, block + 1)
    )
    return follow.amount_in, follow.predicted_amount_out


def test_take_profit_exit_sells_the_whole_position_and_closes_it() -> None:
    strategy = WhaleFollowStrategy(params())
    paid, held = enter(strategy)
    assert len(strategy.positions) == 1
    assert strategy.evaluate(snapshot(uni_usdc(10.3), block=105), portfolio()) == []  # +2.4 %
    up = uni_usdc(10.8)
    (exit_,) = strategy.evaluate(snapshot(up, block=106), portfolio())
    assert (exit_.token_in, exit_.token_out, exit_.amount_in) == (UNI, USDC, held)
    assert exit_.predicted_amount_out == up.quote_exact_input(UNI, held)
    assert "take profit" in exit_.note
    assert strategy.evaluate(snapshot(up, block=107), portfolio()) == []  # exit already pending
    strategy.on_fill(settled(exit_.id, UNI, USDC, held, exit_.predicted_amount_out, 108))
    assert strategy.positions == {}
    assert int(strategy.realized[-1]["profit"]) == exit_.predicted_amount_out - paid > 0


def test_a_follow_or_exit_that_did_not_fill_holds_nothing_new() -> None:
    strategy = WhaleFollowStrategy(params())
    (follow,) = strategy.evaluate(
        snapshot(uni_usdc(10.0), block=100, whale_trades=(whale_buy(100_000, block=100),)),
        portfolio(usdc=50_000),
    )
    refused = NotFilled(
        intent_id=follow.id,
        opportunity_id=follow.id,
        token_in=follow.token_in,
        token_out=follow.token_out,
        predicted_amount_in=follow.amount_in,
        predicted_amount_out=follow.predicted_amount_out,
        reason="exposure_trade",
    )
    strategy.on_fill(refused)
    assert (strategy.positions, strategy.pending) == ({}, {})

    strategy = WhaleFollowStrategy(params())
    _, held = enter(strategy)
    (exit_,) = strategy.evaluate(snapshot(uni_usdc(10.8), block=106), portfolio())
    strategy.on_fill(
        NotFilled(
            intent_id=f"{exit_.id}-0a0a0a",
            opportunity_id=exit_.id,
            token_in=exit_.token_in,
            token_out=exit_.token_out,
            predicted_amount_in=exit_.amount_in,
            predicted_amount_out=exit_.predicted_amount_out,
            reason="reverted",
        )
    )
    # the exit reverted: the position is still held and the exit is proposed again
    assert [p.amount for p in strategy.positions.values()] == [held]
    (retry,) = strategy.evaluate(snapshot(uni_usdc(10.8), block=107), portfolio())
    assert (retry.token_in, retry.amount_in) == (exit_.token_in, held)


def test_stop_loss_and_time_limit_exits() -> None:
    losing = WhaleFollowStrategy(params())
    enter(losing)
    (exit_,) = losing.evaluate(snapshot(uni_usdc(9.6), block=110), portfolio())
    assert "stop loss" in exit_.note

    waiting = WhaleFollowStrategy(params(max_hold_blocks=20))
    enter(waiting)  # filled at block 101
    assert waiting.evaluate(snapshot(uni_usdc(10.05), block=120), portfolio()) == []
    (exit_,) = waiting.evaluate(snapshot(uni_usdc(10.05), block=121), portfolio())
    assert "time limit (blocks)" in exit_.note

    by_seconds = WhaleFollowStrategy(params(max_hold_blocks=None, max_hold_s=3_600))
    enter(by_seconds)
    later = snapshot(uni_usdc(10.05), block=102, timestamp=NOW + 3_600)
    (exit_,) = by_seconds.evaluate(later, portfolio())
    assert "time limit (seconds)" in exit_.note


def test_positions_survive_a_restart_and_still_exit() -> None:
    strategy = WhaleFollowStrategy(params())
    _, held = enter(strategy)
    saved = json.loads(json.dumps(strategy.state()))
    restarted = WhaleFollowStrategy(params())
    restarted.on_start(saved)
    assert restarted.positions == strategy.positions
    # the whale trade already followed is not followed again after the restart
    replay = snapshot(uni_usdc(10.0), block=101, whale_trades=(whale_buy(100_000, block=100),))
    assert restarted.evaluate(replay, portfolio(usdc=50_000)) == []
    (exit_,) = restarted.evaluate(snapshot(uni_usdc(11.0), block=110), portfolio())
    assert exit_.amount_in == held


def test_a_follow_that_never_fills_is_forgotten_after_the_ttl() -> None:
    strategy = WhaleFollowStrategy(params(pending_ttl_blocks=5))
    strategy.evaluate(
        snapshot(uni_usdc(10.0), block=100, whale_trades=(whale_buy(100_000),)),
        portfolio(usdc=50_000),
    )
    assert len(strategy.pending) == 1
    strategy.evaluate(snapshot(uni_usdc(10.0), block=106), portfolio())
    assert strategy.pending == {} and strategy.positions == {}


def test_params_need_a_time_limit() -> None:
    with pytest.raises(ValueError, match="time limit"):
        params(max_hold_blocks=None, max_hold_s=None)


def followed(strategy: WhaleFollowStrategy) -> Fill:
    """Follow one whale buy at block 100; its fill (block 101), given to the strategy."""
    (follow,) = strategy.evaluate(
        snapshot(uni_usdc(10.0), block=100, whale_trades=(whale_buy(100_000, block=100),)),
        portfolio(usdc=50_000),
    )
    entry = settled(follow.id, USDC, UNI, follow.amount_in, follow.predicted_amount_out, 101)
    strategy.on_fill(entry)
    return entry


def test_a_follow_voided_by_a_reorg_is_no_position() -> None:
    strategy = WhaleFollowStrategy(params())
    entry = followed(strategy)
    strategy.on_fill_changed(entry, None)
    assert strategy.positions == {}
    assert strategy.evaluate(snapshot(uni_usdc(10.8), block=102), portfolio()) == []  # no exit


def test_an_exit_voided_by_a_reorg_holds_the_position_again() -> None:
    strategy = WhaleFollowStrategy(params())
    paid, held = enter(strategy, block=110)
    up = uni_usdc(10.8)
    (exit_,) = strategy.evaluate(snapshot(up, block=112), portfolio())
    sold = settled(exit_.id, UNI, USDC, held, exit_.predicted_amount_out, 113)
    strategy.on_fill(sold)
    assert strategy.positions == {}
    # the agent restarts (state through JSON), then a reorg drops the exit's block
    restarted = WhaleFollowStrategy(params())
    restarted.on_start(json.loads(json.dumps(strategy.state())))
    restarted.on_fill_changed(sold, None)
    ((position_id, position),) = restarted.positions.items()
    assert (position.amount, position.cost) == (held, paid)
    assert all(r["id"] != position_id for r in restarted.realized)
    (again,) = restarted.evaluate(snapshot(up, block=114), portfolio())
    assert (again.token_in, again.amount_in) == (UNI, held)


def test_a_follow_moved_by_a_reorg_holds_what_the_new_block_gave() -> None:
    strategy = WhaleFollowStrategy(params())
    entry = followed(strategy)
    moved = replace(entry, amount_out=entry.amount_out - 5, block_number=102)
    strategy.on_fill_changed(entry, moved)
    ((position,),) = [strategy.positions.values()]
    assert (position.amount, position.cost) == (entry.amount_out - 5, entry.amount_in)
