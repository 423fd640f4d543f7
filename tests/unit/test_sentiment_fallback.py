"""Sentiment in the snapshot falls back to neutral (0.0) when missing, stale or failed."""

from __future__ import annotations

from agent.market.snapshot import SentimentScore
from agent.types import Reading, WhaleTrade
from strategies.dca import DcaParams, DcaStrategy
from strategies.whale_follow import WhaleFollowParams, WhaleFollowStrategy
from tests.unit.strategy_market import (
    NOW,
    UNI,
    UNI_USDC_POOL,
    USDC,
    WETH,
    portfolio,
    sentiment_reading,
    snapshot,
    uni_usdc,
    weth_usdc,
)


def test_fresh_score_is_used_as_is() -> None:
    market = snapshot(sentiment={WETH: sentiment_reading(-0.7, age_s=100, max_age_s=600)})
    assert market.sentiment_or_neutral(WETH, NOW) == -0.7


def test_stale_failed_empty_or_missing_scores_are_neutral() -> None:
    market = snapshot(
        sentiment={
            WETH: sentiment_reading(-0.7, age_s=601, max_age_s=600),  # one second too old
            UNI: Reading(
                "x", SentimentScore(0.9), NOW, 600.0, error="HTTP 429"
            ),  # last fetch failed
            USDC: Reading("x", None, NOW, 600.0),  # never had a value
        }
    )
    assert market.sentiment_or_neutral(WETH, NOW) == 0.0
    assert market.sentiment_or_neutral(UNI, NOW) == 0.0
    assert market.sentiment_or_neutral(USDC, NOW) == 0.0
    assert market.sentiment_or_neutral("0x" + "99" * 20, NOW) == 0.0


def test_strategies_treat_stale_fear_as_neutral() -> None:
    stale_panic = {
        WETH: sentiment_reading(-1.0, age_s=3_600),
        UNI: sentiment_reading(-1.0, age_s=3_600),
    }
    dca = DcaStrategy(DcaParams(enabled=True, amount=100, fear_multiplier=2.0))
    (buy,) = dca.evaluate(
        snapshot(weth_usdc(3_000.0), sentiment=stale_panic), portfolio(usdc=1_000)
    )
    assert buy.amount_in == 100 * 10**6  # no fear boost from a stale score

    whale = WhaleTrade(
        "0x" + "77" * 20, USDC, UNI, 10**11, 10**22, UNI_USDC_POOL, "0x" + "ab" * 32, 100
    )
    follow = WhaleFollowStrategy(
        WhaleFollowParams(enabled=True, min_whale_trade_usd=1_000, min_sentiment=0.0)
    )
    market = snapshot(uni_usdc(10.0), block=100, whale_trades=(whale,), sentiment=stale_panic)
    assert len(follow.evaluate(market, portfolio(usdc=10_000))) == 1  # the gate sees 0.0 >= 0.0
