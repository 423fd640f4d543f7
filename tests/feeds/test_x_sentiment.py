"""X recent search against a local fake, and sentiment aggregation with CoinGecko blending."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest

from agent.feeds.coingecko import CoinGeckoClient
from agent.feeds.http import SourcePolicy
from agent.feeds.sentiment import (
    PostScorer,
    SentimentAggregator,
    SentimentFeed,
    coingecko_to_score,
    engagement_weight,
)
from agent.feeds.x import ACCOUNTS_KEY, Post, XClient
from tests.fakes.http_fakes import CoinGeckoFake, XFake, x_post

BEARER = "AAAAAAAAAAAAAAAAAAAAAX-bearer-SECRET-5678"
ETH_QUERY = "($ETH OR ethereum) -is:retweet lang:en"


def make_x(
    session: aiohttp.ClientSession, fake: XFake, policy: SourcePolicy, **kwargs: object
) -> XClient:
    return XClient(
        session,
        BEARER,
        token_queries={"WETH": ETH_QUERY},
        base_url=f"{fake.server.url}/2",
        policy=policy,
        max_results=10,
        **kwargs,  # type: ignore[arg-type]
    )


def post(post_id: int, text: str, **metrics: int) -> Post:
    return Post(post_id, text, None, metrics.get("likes", 0), 0, 0, 0)


async def test_search_paginates_within_bound_and_uses_since_id(
    session: aiohttp.ClientSession, x_fake: XFake, fast_policy: SourcePolicy
) -> None:
    x_fake.posts[ETH_QUERY] = [x_post(100 + i, f"eth post {i}", likes=i) for i in range(5)]
    client = make_x(session, x_fake, fast_policy, max_pages=2)

    first = (await client.poll())["WETH"]

    assert first.value is not None and len(first.value) == 4  # 2 pages of 2, bound hit
    assert first.value[1].likes == 1 and first.value[0].created_at is not None
    requests = x_fake.server.requests
    assert len(requests) == 2
    assert requests[0].headers["Authorization"] == f"Bearer {BEARER}"
    assert requests[0].query["tweet.fields"] == "public_metrics,created_at"
    assert requests[1].query["next_token"] == "2"

    x_fake.posts[ETH_QUERY].append(x_post(200, "fresh eth post"))
    second = (await client.poll())["WETH"]

    assert requests[2].query["since_id"] == "103"  # newest seen so far
    assert second.value is not None and {p.post_id for p in second.value} == {104, 200}


async def test_accounts_query_and_retry_after(
    session: aiohttp.ClientSession, x_fake: XFake, fast_policy: SourcePolicy
) -> None:
    client = make_x(session, x_fake, fast_policy, accounts=["@whale_alert", "vitalik"])
    accounts_query = client.queries[ACCOUNTS_KEY]
    assert accounts_query == "(from:whale_alert OR from:vitalik) -is:retweet"
    x_fake.posts[accounts_query] = [x_post(7, "ethereum looks bullish")]
    x_fake.server.fail("429", retry_after="1")

    readings = await client.poll()

    assert all(not r.is_stale() for r in readings.values())
    first, retry = x_fake.server.requests[:2]
    assert retry.at_monotonic - first.at_monotonic >= 1.0 - 0.01


@pytest.mark.parametrize("kind", ["500", "timeout", "malformed"])
async def test_x_transient_failures_retried(
    session: aiohttp.ClientSession, x_fake: XFake, fast_policy: SourcePolicy, kind: str
) -> None:
    x_fake.posts[ETH_QUERY] = [x_post(1, "eth")]
    client = make_x(session, x_fake, fast_policy)
    x_fake.server.fail(kind, delay_s=1.0)

    reading = (await client.poll())["WETH"]

    assert reading.value is not None and len(reading.value) == 1
    assert len(x_fake.server.requests) == 2


async def test_x_missing_meta_is_stale_not_retried(
    session: aiohttp.ClientSession, x_fake: XFake, fast_policy: SourcePolicy
) -> None:
    x_fake.posts[ETH_QUERY] = [x_post(1, "eth")]
    client = make_x(session, x_fake, fast_policy)
    x_fake.server.fail("missing_field", drop=("meta",))

    reading = (await client.poll())["WETH"]

    assert reading.is_stale() and "meta" in (reading.error or "")
    assert len(x_fake.server.requests) == 1


def test_lexicon_and_engagement_weighting() -> None:
    scorer = PostScorer()
    assert scorer.score("ETH to the moon, very bullish, hodl") > 0.5
    assert scorer.score("total rug, got rekt, dump it") < -0.5
    assert engagement_weight(post(1, "x")) == 1.0
    assert engagement_weight(post(1, "x", likes=1000)) > 7.0

    aggregator = SentimentAggregator(["WETH"], coingecko_weight=0.0, scorer=scorer)
    aggregator.add_posts("WETH", [post(1, "eth bullish"), post(2, "eth rug, rekt", likes=5000)])
    result = aggregator.compute("WETH")

    assert -1.0 <= result.score < 0  # the viral negative post dominates
    assert result.post_volume == 2 and result.posts_in_window == 2


def test_volume_z_score_against_rolling_baseline_and_blend() -> None:
    now = [1_000_000.0]
    aggregator = SentimentAggregator(
        ["WETH"], coingecko_weight=0.3, baseline_len=10, clock=lambda: now[0]
    )
    next_id = iter(range(1, 10_000))
    for volume in [2, 4, 2, 4, 2, 4]:
        aggregator.add_posts("WETH", [post(next(next_id), "eth ok") for _ in range(volume)])
        aggregator.compute("WETH", 50.0)
    aggregator.add_posts("WETH", [post(next(next_id), "eth moon") for _ in range(9)])

    spike = aggregator.compute("WETH", 80.0)

    assert spike.post_volume == 9
    assert spike.volume_z == pytest.approx((9 - 3) / 1)  # baseline mean 3, pstdev 1
    assert spike.coingecko_score == pytest.approx(coingecko_to_score(80.0)) == pytest.approx(0.6)
    assert spike.x_score is not None
    assert spike.score == pytest.approx(0.7 * spike.x_score + 0.3 * 0.6)
    # Posts older than the window stop counting.
    now[0] += aggregator.window_s + 1
    assert aggregator.compute("WETH").posts_in_window == 0


def test_account_posts_attributed_by_keywords() -> None:
    aggregator = SentimentAggregator(["WETH", "WBTC", "LINK"])
    assert aggregator.tokens_mentioned("Bought more $ETH and some bitcoin") == ["WETH", "WBTC"]
    assert aggregator.tokens_mentioned("$LINK!") == ["LINK"]
    assert aggregator.tokens_mentioned("methane stocks") == []


async def test_feed_blends_and_goes_stale_on_outage_without_leaking_token(
    session: aiohttp.ClientSession,
    x_fake: XFake,
    coingecko_fake: CoinGeckoFake,
    fast_policy: SourcePolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    x_fake.posts[ETH_QUERY] = [
        x_post(1, "ethereum breakout, bullish", likes=50),
        x_post(2, "eth looking strong", likes=3),
    ]
    coingecko_fake.prices_usd["ethereum"] = 3000.0
    coingecko_fake.votes_up_pct["ethereum"] = 75.0
    coingecko = CoinGeckoClient(
        session,
        {"WETH": "ethereum"},
        base_url=f"{coingecko_fake.server.url}/api/v3",
        policy=fast_policy,
    )
    feed = SentimentFeed(
        SentimentAggregator(["WETH"], coingecko_weight=0.25),
        x=make_x(session, x_fake, fast_policy),
        coingecko=coingecko,
    )

    good = (await feed.poll())["WETH"]

    assert good.value is not None and not good.is_stale()
    assert good.value.coingecko_score == pytest.approx(0.5)
    assert good.value.x_score is not None and good.value.x_score > 0
    assert 0 < good.value.score <= 1
    assert good.value.post_volume == 2

    x_fake.server.fail("500", times=fast_policy.max_attempts)
    stale = (await feed.poll())["WETH"]

    assert stale.is_stale() and stale.value == good.value
    assert "HTTP 500" in (stale.error or "")
    assert BEARER not in caplog.text and BEARER not in (stale.error or "")


async def test_x_rate_limit_reset_header_is_honoured(
    session: aiohttp.ClientSession, x_fake: XFake, fast_policy: SourcePolicy
) -> None:
    x_fake.posts[ETH_QUERY] = [x_post(1, "eth")]
    client = make_x(session, x_fake, fast_policy)
    reset_epoch = int(time.time()) + 2  # X sends the epoch second the window resets
    x_fake.server.fail("429", headers={"x-rate-limit-reset": str(reset_epoch)})

    reading = (await client.poll())["WETH"]

    assert reading.value is not None and not reading.is_stale()
    _, retry = x_fake.server.requests
    assert retry.at_wall >= reset_epoch - 0.01
