"""What a lying node or a rogue pool could make the agent believe, and what it believes instead:
implausible heads are refused, absurd pool prices are ignored, each reported once."""

from __future__ import annotations

from agent import events as ev
from agent.alerts import base as cards
from agent.alerts.subscriber import AlertSubscriber
from agent.chain.heads import Header, check_gap, check_time, max_plausible_gap
from agent.dex.v2 import V2Pool
from agent.market.builder import usd_prices, weighted_median
from agent.types import Token

USDC = Token("0x" + "0" * 39 + "1", "USDC", 6)
DAI = Token("0x" + "0" * 39 + "2", "DAI", 18)
WETH = Token("0x" + "0" * 39 + "3", "WETH", 18)
LINK = Token("0x" + "0" * 39 + "4", "LINK", 18)
TOKENS = {t.address: t for t in (USDC, DAI, WETH, LINK)}


class Posted:
    def __init__(self) -> None:
        self.cards: list[cards.AlertEvent] = []

    def post(self, event: cards.AlertEvent) -> bool:
        self.cards.append(event)
        return True


def wired() -> tuple[ev.EventBus, Posted]:
    bus = ev.EventBus()
    posted = Posted()
    AlertSubscriber(posted, {}).subscribe(bus)
    return bus, posted


def header(number: int, timestamp: int) -> Header:
    return Header(number, f"0x{number:064x}", f"0x{number - 1:064x}", timestamp)


# --- heads ------------------------------------------------------------------------------------


def test_a_head_a_billion_blocks_ahead_is_refused_whatever_the_chain() -> None:
    for block_time_s in (0.05, 0.25, 2.0, 12.0):
        refusal = check_gap(20_000_000, 10**9, elapsed_s=12.0, block_time_s=block_time_s)
        assert refusal is not None and refusal.reason == "too_far_ahead"
        assert "980000000 blocks past the last good head 20000000" in refusal.detail


def test_the_next_heads_and_a_catch_up_after_an_outage_are_plausible() -> None:
    assert check_gap(100, 101, elapsed_s=12.0, block_time_s=12.0) is None
    assert check_gap(100, 110, elapsed_s=0.5, block_time_s=12.0) is None  # a burst
    # an hour without heads on Ethereum: ~300 blocks came, all plausible
    assert check_gap(100, 400, elapsed_s=3600.0, block_time_s=12.0) is None
    # the same gap a minute after the last head is not
    assert check_gap(100, 400 + 256, elapsed_s=60.0, block_time_s=12.0) is not None


def test_the_allowance_grows_with_elapsed_time_at_a_tolerant_rate() -> None:
    assert max_plausible_gap(0.0, 12.0) == max_plausible_gap(-5.0, 12.0)
    assert max_plausible_gap(120.0, 12.0) - max_plausible_gap(0.0, 12.0) == 40  # 4x 10 blocks
    assert max_plausible_gap(1.0, 0.25) - max_plausible_gap(0.0, 0.25) == 16


def test_a_newer_head_timestamped_before_the_last_good_one_is_refused() -> None:
    last = header(100, 1_700_000_000)
    assert check_time(last, header(101, 1_700_000_012)) is None
    assert check_time(last, header(101, 1_700_000_000)) is None  # L2s share seconds
    refusal = check_time(last, header(101, 1_699_999_000))
    assert refusal is not None and refusal.reason == "time_backwards"


def test_a_run_of_refused_heads_alerts_once_and_again_only_after_a_plausible_head() -> None:
    bus, posted = wired()
    for number in (10**9, 10**9 + 1, 10**9 + 2):
        bus.publish(ev.HeadRefused(number=number, reason="too_far_ahead", last_good=100))
    assert [c.kind for c in posted.cards] == ["head_refused"]
    [card] = posted.cards
    assert isinstance(card, cards.HeadRefused)
    assert "Head refused: block 1000000000" in card.render_text()
    assert "last good head: 100" in card.render_text()

    bus.publish(ev.HeadTrusted(number=101, refused=3))
    bus.publish(ev.HeadRefused(number=5, reason="unconfirmed", last_good=101))
    assert [c.kind for c in posted.cards] == ["head_refused", "head_refused"]


# --- USD prices --------------------------------------------------------------------------------


def pair(name: str, base: Token, base_whole: float, quote: Token, quote_whole: float) -> V2Pool:
    return V2Pool(
        name,
        base.address,
        quote.address,
        int(base_whole * 10**base.decimals),
        int(quote_whole * 10**quote.decimals),
    )


# WETH at $3,000 in three honest pools of different depth, LINK through WETH.
HONEST = {
    "uni": pair("uni", WETH, 2_000, USDC, 6_000_000),
    "sushi": pair("sushi", WETH, 800, USDC, 2_400_000),
    "dai": pair("dai", WETH, 1_000, DAI, 3_000_000),
    "link": pair("link", LINK, 200_000, WETH, 1_000),
}


def test_honest_pools_price_weth_and_what_trades_against_it() -> None:
    priced = usd_prices(HONEST, TOKENS)
    assert priced.prices[WETH.address] == 3_000.0
    assert priced.prices[LINK.address] == 15.0
    assert priced.outliers == ()


def test_a_pool_stuffed_with_stablecoins_prices_nothing_and_is_reported() -> None:
    # 10^15 USDC minted against one WETH: the pool's quote side dwarfs every honest pool
    rogue = pair("rogue", WETH, 1, USDC, 10**15)
    priced = usd_prices({**HONEST, "rogue": rogue}, TOKENS)
    assert priced.prices[WETH.address] == 3_000.0
    assert priced.prices[LINK.address] == 15.0
    [outlier] = priced.outliers
    assert outlier.quote.pool == "rogue" and outlier.consensus_usd == 3_000.0
    assert outlier.quote.price_usd == 10**15 and outlier.deviation > 10**11


def test_a_pool_stuffed_with_weth_prices_nothing_either() -> None:
    rogue = pair("rogue", WETH, 1_000_000, USDC, 1)  # WETH at a millionth of a dollar
    priced = usd_prices({**HONEST, "rogue": rogue}, TOKENS)
    assert priced.prices[WETH.address] == 3_000.0
    assert [o.quote.pool for o in priced.outliers] == ["rogue"]


def test_the_deeper_pools_set_the_price_when_honest_pools_disagree_a_little() -> None:
    pools = {**HONEST, "sushi": pair("sushi", WETH, 800, USDC, 2_480_000)}  # $3,100, shallow
    priced = usd_prices(pools, TOKENS)
    assert priced.prices[WETH.address] == 3_000.0
    assert priced.outliers == ()  # 3% off is a price gap, not an outlier


def test_an_outside_price_is_used_and_weighs_the_pools() -> None:
    # Only one honest pool and one rogue one: the pools alone cannot tell which is which,
    # CoinGecko's (or a CEX's) price can.
    pools = {"uni": HONEST["uni"], "rogue": pair("rogue", WETH, 5_000, USDC, 5 * 10**12)}
    checked = usd_prices(pools, TOKENS, references={WETH.address: 2_990.0})
    assert checked.prices[WETH.address] == 3_000.0
    assert [o.quote.pool for o in checked.outliers] == ["rogue"]
    external = usd_prices(pools, TOKENS, external={WETH.address: 2_990.0})
    assert external.prices[WETH.address] == 2_990.0
    assert [o.quote.pool for o in external.outliers] == ["rogue"]


def test_stale_pools_are_left_out() -> None:
    rogue = pair("rogue", WETH, 1, USDC, 10**15)
    priced = usd_prices({**HONEST, "rogue": rogue}, TOKENS, frozenset({"rogue"}))
    assert priced.prices[WETH.address] == 3_000.0 and priced.outliers == ()


def test_weighted_median() -> None:
    assert weighted_median([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == 2.0
    assert weighted_median([1.0, 2.0, 3.0], [0.0, 0.0, 5.0]) == 3.0
    assert weighted_median([3.0, 1.0, 2.0], [0.0, 0.0, 0.0]) == 2.0
    assert weighted_median([5.0, 1.0], [0.0, 0.0]) == 1.0  # lower median


def test_an_outside_price_no_pool_shares_checks_nothing() -> None:
    priced = usd_prices({"uni": HONEST["uni"]}, TOKENS, references={WETH.address: 9_000.0})
    assert priced.prices[WETH.address] == 3_000.0 and priced.outliers == ()


def test_a_pool_turning_outlier_alerts_once_until_it_is_back_in_line() -> None:
    bus, posted = wired()
    outlier = ev.PriceOutlier(
        symbol="WETH",
        pool="0x" + "ab" * 20,
        dex="sushiswap",
        pool_price_usd=1e15,
        price_usd=3_000.0,
        deviation=3.3e11,
    )
    for _ in range(3):
        bus.publish(outlier)
    assert [c.kind for c in posted.cards] == ["price_outlier"]
    text = posted.cards[0].render_text()
    assert "Price outlier ignored: WETH on sushiswap" in text and "price used: $3,000" in text
    bus.publish(ev.PriceOutlierCleared(symbol="WETH", pool=outlier.pool))
    bus.publish(outlier)
    assert [c.kind for c in posted.cards] == ["price_outlier", "price_outlier"]


def test_refused_heads_and_ignored_pools_show_in_the_metrics() -> None:
    from agent.metrics.server import AgentMetrics

    bus = ev.EventBus()
    metrics = AgentMetrics()
    metrics.subscribe(bus)
    bus.publish(ev.HeadRefused(number=10**9, reason="too_far_ahead", last_good=100))
    bus.publish(
        ev.PriceOutlier(
            symbol="WETH", pool="0xab", dex="x", pool_price_usd=1e15, price_usd=3e3, deviation=1.0
        )
    )
    text = metrics.exposition().decode()
    assert 'heads_refused_total{reason="too_far_ahead"} 1.0' in text
    assert "price_outlier_pools 1.0" in text
    bus.publish(ev.PriceOutlierCleared(symbol="WETH", pool="0xab"))
    assert "price_outlier_pools 0.0" in metrics.exposition().decode()
