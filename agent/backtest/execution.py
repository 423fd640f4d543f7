"""What a backtest trade costs: pool fee, slippage and gas, on integer balances.

Candle prices are floats (quote per base); every amount that changes a balance is an ``int`` in
smallest units, rounded against us (inputs up, outputs down), as on chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from strategies._directional import BPS

FEE_DENOMINATOR_PIPS = 1_000_000


class BacktestSettings(BaseModel):
    """The market and costs a backtest assumes. Whole-token amounts are exact decimals.

    The quote token is taken to be a USD stablecoin worth ``quote_usd`` each, which is what
    converts ``gas_usd`` (the cost of one swap's gas) into quote units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_symbol: str = "WETH"
    quote_symbol: str = "USDC"
    base_decimals: int = Field(18, ge=0, le=36)
    quote_decimals: int = Field(6, ge=0, le=36)
    initial_quote: Decimal = Field(Decimal(100_000), ge=0)
    initial_base: Decimal = Field(Decimal(0), ge=0)
    fee_pips: int = Field(3000, ge=0, lt=FEE_DENOMINATOR_PIPS)
    slippage_bps: int = Field(5, ge=0, lt=BPS)
    gas_usd: float = Field(1.0, ge=0)
    quote_usd: float = Field(1.0, gt=0)

    @property
    def initial_quote_units(self) -> int:
        return int(self.initial_quote * (Decimal(10) ** self.quote_decimals))

    @property
    def initial_base_units(self) -> int:
        return int(self.initial_base * (Decimal(10) ** self.base_decimals))

    @property
    def gas_quote_units(self) -> int:
        """Gas of one trade in smallest quote units (rounded up)."""
        scale: int = 10**self.quote_decimals
        return math.ceil(self.gas_usd / self.quote_usd * scale)


class Trade(NamedTuple):
    """One executed backtest trade at candle number ``candle`` (``ts`` unix s, ``price`` its close).

    ``base_amount`` bought (side "buy") or sold ("sell"); ``quote_amount`` paid or received
    (fee and slippage included, gas not); ``gas_quote`` charged on top. ``pnl_quote`` is the
    realised profit of a closing trade (grid sell: proceeds - cost of the lot - gas of both
    legs), None for an opening one.
    """

    candle: int
    ts: int
    side: str
    price: float
    base_amount: int
    quote_amount: int
    fee_quote: int
    gas_quote: int
    pnl_quote: int | None
    note: str


@dataclass
class Ledger:
    """Balances (smallest units) and the trades that moved them, in order."""

    quote: int
    base: int
    trades: list[Trade] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CostModel:
    """Turns a price and an amount into exact integer fills with fee, slippage and gas."""

    base_scale: int
    quote_scale: int
    fee_pips: int
    slippage_bps: int
    gas_quote: int

    @classmethod
    def from_settings(cls, settings: BacktestSettings) -> CostModel:
        return cls(
            base_scale=10**settings.base_decimals,
            quote_scale=10**settings.quote_decimals,
            fee_pips=settings.fee_pips,
            slippage_bps=settings.slippage_bps,
            gas_quote=settings.gas_quote_units,
        )

    def quote_for_base(self, base_out: int, price: float) -> tuple[int, int]:
        """``(quote_in, fee_quote)`` to buy exactly ``base_out`` at ``price``; rounded up."""
        at_price = math.ceil(base_out * price * self.quote_scale / self.base_scale)
        denominator = (FEE_DENOMINATOR_PIPS - self.fee_pips) * BPS
        quote_in = -(-at_price * FEE_DENOMINATOR_PIPS * (BPS + self.slippage_bps) // denominator)
        return quote_in, quote_in - at_price

    def quote_from_base(self, base_in: int, price: float) -> tuple[int, int]:
        """``(quote_out, fee_quote)`` for selling ``base_in`` at ``price``; rounded down."""
        at_price = math.floor(base_in * price * self.quote_scale / self.base_scale)
        kept = (FEE_DENOMINATOR_PIPS - self.fee_pips) * (BPS - self.slippage_bps)
        quote_out = at_price * kept // (FEE_DENOMINATOR_PIPS * BPS)
        return quote_out, at_price - quote_out

    def base_for_quote(self, quote_in: int, price: float) -> tuple[int, int]:
        """``(base_out, fee_quote)`` for spending ``quote_in`` at ``price``; rounded down."""
        kept = (FEE_DENOMINATOR_PIPS - self.fee_pips) * (BPS - self.slippage_bps)
        net_quote = quote_in * kept // (FEE_DENOMINATOR_PIPS * BPS)
        base_out = math.floor(net_quote / price * self.base_scale / self.quote_scale)
        return base_out, quote_in - net_quote
