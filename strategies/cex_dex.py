"""DEX–CEX arbitrage: a DEX pool priced away from the CEX mid by more than fees + gas + buffer.

When a pool sells a token cheaper than the CEX bid (or buys it dearer than the CEX ask), the
strategy proposes the directional DEX trade, sized on the exact simulator to maximise the edge
valued at the CEX price. The CEX leg (the hedge) is placed by the engine through ccxt only when
an exchange key is configured; otherwise it is advisory and shown in the opportunity's note.
Stale CEX readings are never traded on.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from pydantic import Field

from agent.dex.prices import marginal_rate, price_impact_bps
from agent.dex.routes import Leg, maximise, simulate
from agent.dex.v2 import V2Pool
from agent.errors import SwapRevert
from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Opportunity, RouteHop
from strategies.base import BaseStrategy, StrategyParams


class CexDexParams(StrategyParams):
    """``[strategies.cex_dex]``: DEX price vs CEX mid beyond fees + gas + ``buffer_bps``."""

    enabled: bool = False
    exchange: str = "binance"
    """Which exchange's book is the reference (and takes the hedge when ``hedge`` is on)."""
    symbols: list[str] = Field(default_factory=lambda: ["ETH/USDT"], min_length=1)
    quote_tokens: list[str] = Field(default_factory=lambda: ["USDC", "WETH"])
    """Symbols we pay with / receive on the DEX side."""
    buffer_bps: float = Field(default=30.0, ge=0, le=10_000)
    """Extra edge demanded beyond fees and gas, for CEX latency and hedge slippage."""
    cex_fee_bps: float = Field(default=10.0, ge=0)
    """Taker fee of the CEX hedge, charged on its notional."""
    min_profit_usd: float = Field(default=5.0, ge=0)
    max_trade_usd: float = Field(default=5_000.0, gt=0)
    gas_per_swap: int = Field(default=150_000, gt=0)
    hedge: bool = False
    """Place the CEX leg (needs an exchange API key in [feeds.cex]); otherwise advisory."""
    max_opportunities: int = Field(default=3, ge=1)
    search_iterations: int = Field(default=50, ge=10, le=200)


class CexDexStrategy(BaseStrategy[CexDexParams]):
    name: ClassVar[str] = "cex_dex"
    Params: ClassVar[type[StrategyParams]] = CexDexParams

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        params = self.params
        by_symbol = {t.symbol: t.address for t in snapshot.tokens.values()}
        quote_tokens = {by_symbol[s] for s in params.quote_tokens if s in by_symbol}
        found: list[Opportunity] = []
        for address, pool in snapshot.pools.items():
            if address in snapshot.stale_pools or marginal_rate(pool, pool.token0) <= 0:
                continue
            for token, quote in ((pool.token0, pool.token1), (pool.token1, pool.token0)):
                if quote not in quote_tokens:
                    continue
                reading = snapshot.cex.get(token)
                if reading is None or reading.value is None or reading.is_stale(snapshot.feeds_now):
                    continue
                # buy ``token`` on the DEX to sell at the CEX bid, or the reverse at the ask
                for leg, cex_price_usd in (
                    (Leg(pool, quote, token), reading.value.bid),
                    (Leg(pool, token, quote), reading.value.ask),
                ):
                    opportunity = self._against_cex(snapshot, portfolio, leg, quote, cex_price_usd)
                    if (
                        opportunity is not None
                        and opportunity.net_profit_usd >= params.min_profit_usd
                    ):
                        found.append(opportunity)
        found.sort(key=lambda o: o.net_profit_usd, reverse=True)
        return found[: params.max_opportunities]

    def _against_cex(
        self,
        snapshot: MarketSnapshot,
        portfolio: PortfolioView,
        leg: Leg,
        quote: str,
        cex_price_usd: float,
    ) -> Opportunity | None:
        """Trade ``leg`` when the DEX beats the CEX by the edge: pay ``quote`` for a token the
        CEX bids more for, or sell a token for more ``quote`` than it costs at the CEX ask."""
        quote_price = snapshot.prices_usd.get(quote, 0.0)
        rate = marginal_rate(leg.pool, leg.token_in)  # out per in, after the pool fee
        if quote_price <= 0 or rate <= 0:
            return None
        if leg.token_in == quote:  # buying the token on the DEX below the CEX bid
            dex_price_usd = quote_price / (rate * _scale(snapshot, leg.token_out, quote))
            beats_cex = dex_price_usd < cex_price_usd * (1 - self._edge_needed())
        else:  # selling the token on the DEX above the CEX ask
            dex_price_usd = rate * _scale(snapshot, quote, leg.token_in) * quote_price
            beats_cex = dex_price_usd > cex_price_usd * (1 + self._edge_needed())
        return self._sized(snapshot, portfolio, leg, cex_price_usd) if beats_cex else None

    def _edge_needed(self) -> float:
        return (self.params.buffer_bps + self.params.cex_fee_bps) / 10_000

    def _sized(
        self, snapshot: MarketSnapshot, portfolio: PortfolioView, leg: Leg, cex_price_usd: float
    ) -> Opportunity | None:
        params = self.params
        token_in, token_out = leg.token_in, leg.token_out
        meta_in, meta_out = snapshot.tokens[token_in], snapshot.tokens[token_out]
        # Value both sides at the CEX for the traded token, at the oracle price for the quote.
        price_in = snapshot.prices_usd.get(token_in, 0.0)
        price_out = snapshot.prices_usd.get(token_out, 0.0)
        if token_out in snapshot.cex:
            price_out = cex_price_usd
        else:
            price_in = cex_price_usd
        if price_in <= 0 or price_out <= 0:
            return None
        cap = min(
            portfolio.balances.get(token_in, 0),
            int(params.max_trade_usd / price_in * 10**meta_in.decimals),
        )
        if cap <= 0:
            return None
        fee_factor = 1 - params.cex_fee_bps / 10_000

        def edge_micro_usd(amount_in: int) -> int:
            try:
                out = simulate((leg,), amount_in)[-1]
            except SwapRevert:
                return -(2**255)
            value_out = out / 10**meta_out.decimals * price_out * fee_factor
            value_in = amount_in / 10**meta_in.decimals * price_in
            return int((value_out - value_in) * 1e6)

        amount_in = maximise(edge_micro_usd, 1, cap, params.search_iterations)
        gross_usd = edge_micro_usd(amount_in) / 1e6
        if gross_usd <= 0:
            return None
        amounts = simulate((leg,), amount_in)
        gas_usd = snapshot.gas_cost_usd(params.gas_per_swap)
        hop = RouteHop(
            pool=leg.pool.address,
            dex=ref.dex if (ref := snapshot.pool_refs.get(leg.pool.address)) else "",
            kind="v2" if isinstance(leg.pool, V2Pool) else "v3",
            token_in=token_in,
            token_out=token_out,
            fee_pips=leg.pool.fee_pips,
        )
        side = "sell" if token_out in snapshot.cex else "buy"
        hedge_token = meta_out if side == "sell" else meta_in
        hedge_amount = amounts[-1] if side == "sell" else amount_in
        mode = "hedge" if params.hedge else "advisory hedge"
        key = f"{snapshot.block}|{leg.pool.address}|{token_in}|{amount_in}"
        return Opportunity(
            id=f"{self.name}-{snapshot.block}-{hashlib.sha256(key.encode()).hexdigest()[:12]}",
            strategy=self.name,
            kind="swap",
            route=(hop,),
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            predicted_amount_out=amounts[-1],
            predicted_profit=0,
            gross_profit_usd=gross_usd,
            gas_estimate=params.gas_per_swap,
            gas_cost_usd=gas_usd,
            net_profit_usd=gross_usd - gas_usd,
            notional_usd=amount_in / 10**meta_in.decimals * price_in,
            price_impact_bps=price_impact_bps((leg,), amounts),
            block=snapshot.block,
            note=(
                f"{mode}: {side} {hedge_amount / 10**hedge_token.decimals:.6g} "
                f"{hedge_token.symbol} on the CEX at {cex_price_usd:.6g} USD"
            ),
        )


def _scale(snapshot: MarketSnapshot, token_out: str, token_in: str) -> float:
    """Converts a raw-unit rate (out units per in unit) to whole tokens per whole token."""
    return 10.0 ** (snapshot.tokens[token_in].decimals - snapshot.tokens[token_out].decimals)
