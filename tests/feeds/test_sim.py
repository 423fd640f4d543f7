"""Simulated CEX / 1inch / sentiment sources: same interfaces, driven by the devnet market."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from agent.devnet import Devnet
from agent.devnet.traders import swap_v2
from agent.errors import TemporaryError
from agent.feeds.cex import CexFeed, CexSource
from agent.feeds.oneinch import QuotePair, QuoteSource
from agent.feeds.sentiment import SentimentSource
from agent.feeds.sim import SimCexClient, SimOneInchClient, SimSentimentFeed


def calldata(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


async def test_sim_cex_walks_around_pool_price_and_goes_stale_on_failure() -> None:
    prices = {"WETH": 3000.0, "WBTC": 60000.0}
    broken = {"on": False}

    async def price_usd(symbol: str) -> float:
        if broken["on"]:
            raise TemporaryError("devnet node unreachable")
        return prices[symbol]

    cex: CexSource = SimCexClient("simex", ["ETH/USDT", "BTC/USDT"], price_usd, seed=3)
    mids = []
    for _ in range(60):
        await cex.poll()
        ticker = cex.ticker("ETH/USDT")
        book = cex.order_book("ETH/USDT")
        assert ticker is not None and ticker.value is not None and not ticker.is_stale()
        assert book is not None and book.value is not None
        assert book.value.best_bid == pytest.approx(ticker.value.bid)
        mids.append(ticker.value.mid)
    assert all(abs(m / 3000.0 - 1) <= 0.015 + 1e-12 for m in mids)  # max drift 150 bps
    assert len({round(m, 6) for m in mids}) > 30  # it actually moves

    feed = CexFeed([cex])
    assert feed.mid_usd("WETH") == pytest.approx(mids[-1])
    broken["on"] = True
    await feed.poll()
    stale = cex.ticker("ETH/USDT")
    assert stale is not None and stale.is_stale() and stale.value is not None
    assert "unreachable" in (stale.error or "")
    assert feed.mid_usd("WETH") is None  # stale data is not offered as a price


@pytest.mark.chain
async def test_sim_sources_follow_the_devnet_market(devnet: Devnet) -> None:
    a = devnet.addresses
    usdc, weth = a["USDC"], a["WETH"]
    routers = [a["uniswap_v2.router"], a["sushiswap.router"]]

    async def v2_out(router: str, src: str, dst: str, amount_in: int) -> int:
        data = calldata(
            "getAmountsOut(uint256,address[])", ["uint256", "address[]"], [amount_in, [src, dst]]
        )
        raw = await devnet.call("eth_call", [{"to": router, "data": data}, "latest"])
        amounts = decode(["uint256[]"], bytes.fromhex(raw[2:]))[0]
        return int(amounts[-1])

    async def best_quote(src: str, dst: str, amount_in: int) -> int:
        return max([await v2_out(r, src, dst, amount_in) for r in routers])

    async def price_usd(symbol: str) -> float:
        token = devnet.tokens[symbol]
        one = 10**token.decimals // 1000  # a small probe: price without much impact
        out = await v2_out(routers[0], token.address, usdc, one)
        return out / 10**6 * 1000

    snapshot = await devnet.snapshot()
    try:
        one_eth = 10**18
        aggregator: QuoteSource = SimOneInchClient(
            best_quote, pairs=[QuotePair(weth, usdc, one_eth)], improvement_bps=5
        )
        reading = (await aggregator.poll())[QuotePair(weth, usdc, one_eth)]
        local_best = await best_quote(weth, usdc, one_eth)
        assert reading.value is not None
        assert reading.value.amount_out == local_best * 10_005 // 10_000

        pool_price = await price_usd("WETH")
        assert 2000 < pool_price < 4000
        cex = SimCexClient("simex", ["ETH/USDC"], price_usd)
        await cex.poll()
        ticker = cex.ticker("ETH/USDC")
        assert ticker is not None and ticker.value is not None
        assert abs(ticker.value.mid / pool_price - 1) <= 0.015

        sentiment: SentimentSource = SimSentimentFeed(["WETH"], price_usd, seed=5)
        await sentiment.poll()
        # A large buy pumps WETH on the V2 pool the prices are read from...
        trader = devnet.accounts[3][0]
        await devnet.call(
            "eth_sendTransaction",
            [
                {
                    "from": devnet.accounts[0][0],
                    "to": usdc,
                    "data": calldata(
                        "mint(address,uint256)", ["address", "uint256"], [trader, 10**13]
                    ),
                }
            ],
        )
        assert devnet.rpc is not None
        await swap_v2(
            devnet.rpc,
            dex="uniswap_v2",
            router=routers[0],
            trader=trader,
            path=[usdc, weth],
            amount_in=2_000_000 * 10**6,
        )
        assert await price_usd("WETH") > pool_price * 1.05
        after = (await sentiment.poll())["WETH"]
        # ...and the simulated crowd turns bullish, loudly.
        assert after.value is not None and not after.is_stale()
        assert after.value.score > 0.2
        assert after.value.coingecko_score is not None and after.value.coingecko_score > 0
        assert after.value.post_volume > 10
    finally:
        await devnet.revert(snapshot)
