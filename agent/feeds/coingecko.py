"""CoinGecko v3: USD prices for valuation, community sentiment and market data per coin.

* Public: ``https://api.coingecko.com/api/v3``, no key, a few calls per minute.
* Demo key: same host, header ``x-cg-demo-api-key``.
* Pro key: ``https://pro-api.coingecko.com/api/v3``, header ``x-cg-pro-api-key``.

Prices come from ``/simple/price?ids=a,b,c&vs_currencies=usd`` in batches (one request for many
coins); ``/coins/{id}`` gives ``sentiment_votes_up_percentage`` and ``market_data``. Prices are
floats: they value portfolios and score sentiment, they never size an on-chain amount.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from agent.errors import AgentError, ConfigError, ResponseShapeError
from agent.feeds.http import (
    HttpSource,
    ReadingBook,
    SourcePolicy,
    describe_error,
    read_into,
    require,
    require_float,
)
from agent.types import Reading

Plan = Literal["public", "demo", "pro"]

PUBLIC_URL = "https://api.coingecko.com/api/v3"
PRO_URL = "https://pro-api.coingecko.com/api/v3"
# Documented limits: public ~5-15/min, Demo 30/min, Pro 500/min and up.
DEFAULT_POLICIES: dict[Plan, SourcePolicy] = {
    "public": SourcePolicy(rate_per_s=0.2, burst=2, max_age_s=300.0),
    "demo": SourcePolicy(rate_per_s=0.5, burst=3, max_age_s=180.0),
    "pro": SourcePolicy(rate_per_s=8.0, burst=10, max_age_s=120.0),
}
# /simple/price takes a comma-separated id list; keep URLs well under common length limits.
DEFAULT_BATCH_SIZE = 200


@dataclass(frozen=True, slots=True)
class CoinData:
    """Per-coin data from ``/coins/{id}``. USD values as float; percentages 0..100."""

    coin_id: str
    price_usd: float
    market_cap_usd: float | None
    volume_24h_usd: float | None
    change_24h_pct: float | None
    sentiment_up_pct: float | None


class CoinGeckoClient:
    """USD prices (batched) and per-coin sentiment for configured tokens.

    ``coin_ids`` maps our token symbols (``"WETH"``) to CoinGecko ids (``"ethereum"``).
    """

    source = "coingecko"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        coin_ids: Mapping[str, str],
        *,
        api_key: str | None = None,
        plan: Plan = "public",
        base_url: str | None = None,
        policy: SourcePolicy | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        logger: logging.Logger | None = None,
    ) -> None:
        if plan != "public" and not api_key:
            raise ConfigError(f"feeds.coingecko.api_key is required for the {plan} plan")
        headers: dict[str, str] = {}
        if plan == "demo" and api_key:
            headers["x-cg-demo-api-key"] = api_key
        elif plan == "pro" and api_key:
            headers["x-cg-pro-api-key"] = api_key
        url = base_url or (PRO_URL if plan == "pro" else PUBLIC_URL)
        self.policy = policy if policy is not None else DEFAULT_POLICIES[plan]
        self.coin_ids = dict(coin_ids)
        self.batch_size = max(1, batch_size)
        self.http = HttpSource(
            session,
            self.source,
            url,
            self.policy,
            headers=headers,
            secrets=[api_key] if api_key else [],
            logger=logger if logger is not None else logging.getLogger("agent.feeds.coingecko"),
        )
        self.prices: ReadingBook[str, float] = ReadingBook(self.source, self.policy.max_age_s)
        self.coins: ReadingBook[str, CoinData] = ReadingBook(self.source, self.policy.max_age_s)

    async def simple_prices(self, coin_ids: Sequence[str]) -> dict[str, float]:
        """USD price per CoinGecko id, one request per ``batch_size`` ids.

        Ids CoinGecko does not return are absent from the result.
        """
        prices: dict[str, float] = {}
        unique = list(dict.fromkeys(coin_ids))
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            payload = await self.http.get_json(
                "/simple/price", {"ids": ",".join(batch), "vs_currencies": "usd"}
            )
            if not isinstance(payload, dict):
                raise ResponseShapeError("simple/price: expected an object")
            for coin_id in batch:
                if coin_id in payload:
                    prices[coin_id] = require_float(payload, coin_id, "usd")
        return prices

    async def coin(self, coin_id: str) -> CoinData:
        """Market data and community sentiment of one coin."""
        payload = await self.http.get_json(
            f"/coins/{coin_id}",
            {
                "localization": "false",
                "tickers": "false",
                "market_data": "true",
                "community_data": "true",
                "developer_data": "false",
                "sparkline": "false",
            },
        )
        market = require(payload, "market_data")
        return CoinData(
            coin_id=coin_id,
            price_usd=require_float(market, "current_price", "usd"),
            market_cap_usd=_optional_float(market, "market_cap", "usd"),
            volume_24h_usd=_optional_float(market, "total_volume", "usd"),
            change_24h_pct=_optional_float(market, "price_change_percentage_24h"),
            sentiment_up_pct=_optional_float(payload, "sentiment_votes_up_percentage"),
        )

    async def poll_prices(self) -> dict[str, Reading[float]]:
        """Refresh every configured token's USD price; keyed by our token symbol."""
        by_id: dict[str, list[str]] = {}
        for symbol, coin_id in self.coin_ids.items():
            by_id.setdefault(coin_id, []).append(symbol)
        try:
            prices = await self.simple_prices(list(by_id))
        except Exception as exc:
            # One failed batch request: every token goes stale with the same error.
            error = describe_error(exc, self.http.redactor)
            if isinstance(exc, AgentError):
                self.http.log.warning("%s: prices stale: %s", self.source, error)
            else:
                self.http.log.error(
                    "%s: prices poll crashed\n%s",
                    self.source,
                    self.http.redactor.format_exception(exc),
                )
            return {
                symbol: self.prices.fail(symbol, error)
                for symbols in by_id.values()
                for symbol in symbols
            }
        results: dict[str, Reading[float]] = {}
        for coin_id, symbols in by_id.items():
            for symbol in symbols:
                if coin_id in prices:
                    results[symbol] = self.prices.ok(symbol, prices[coin_id])
                else:
                    error = f"ResponseShapeError: simple/price lacks {coin_id}"
                    results[symbol] = self.prices.fail(symbol, error)
        return results

    async def poll_coins(self) -> dict[str, Reading[CoinData]]:
        """Refresh sentiment and market data, one request per configured coin."""
        results: dict[str, Reading[CoinData]] = {}
        for symbol, coin_id in self.coin_ids.items():

            async def fetch(coin_id: str = coin_id) -> CoinData:
                return await self.coin(coin_id)

            results[symbol] = await read_into(
                self.coins, symbol, fetch, self.http.redactor, self.http.log
            )
        return results

    async def poll(self) -> None:
        """Prices and per-coin data in one cycle (engines usually poll coins less often)."""
        await self.poll_prices()
        await self.poll_coins()

    def price_usd(self, symbol: str) -> Reading[float] | None:
        return self.prices.get(symbol)

    def sentiment_up_pct(self, symbol: str) -> Reading[float] | None:
        """``sentiment_votes_up_percentage`` (0..100) of a token, with the coin reading's age."""
        reading = self.coins.get(symbol)
        if reading is None:
            return None
        up = reading.value.sentiment_up_pct if reading.value is not None else None
        return Reading(
            source=reading.source,
            value=up,
            fetched_at=reading.fetched_at,
            max_age_s=reading.max_age_s,
            error=reading.error,
        )


def _optional_float(payload: Any, *path: str) -> float | None:
    try:
        return require_float(payload, *path)
    except ResponseShapeError:
        return None
