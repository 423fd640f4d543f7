"""Frozen value types shared by the layers (feeds, dex, strategies, risk, execution).

Amounts that are sent, compared with a minimum or stored as fills are ``int`` in the token's
smallest unit. ``float`` appears only for USD valuations and scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC20 token on one chain. ``address`` is checksummed."""

    address: str
    symbol: str
    decimals: int

    def to_units(self, amount: int | str) -> int:
        """Whole-token amount (int or decimal string) -> smallest units, exactly."""
        from decimal import Decimal

        return int(Decimal(amount) * (Decimal(10) ** self.decimals))

    def from_units(self, amount_wei: int) -> float:
        """Smallest units -> whole tokens, for display and USD valuation only."""
        return amount_wei / 10**self.decimals


@dataclass(frozen=True, slots=True)
class Reading(Generic[T]):
    """A value from a feed with its provenance: where it came from, when, and how long it is good.

    ``fetched_at`` is ``time.time()`` seconds. ``error`` is set when the latest fetch failed and
    ``value`` is the last good value (or ``None`` when there never was one).
    """

    source: str
    value: T | None
    fetched_at: float
    max_age_s: float
    error: str | None = None

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.fetched_at

    def is_stale(self, now: float | None = None) -> bool:
        return self.value is None or self.error is not None or self.age_s(now) > self.max_age_s


@dataclass(frozen=True, slots=True)
class WhaleTrade:
    """A swap by a watched wallet, decoded from logs. Amounts in smallest units."""

    wallet: str
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    pool: str
    tx_hash: str
    block: int


@dataclass(frozen=True, slots=True)
class GasPrice:
    """EIP-1559 fee picture for the next block, in wei per gas."""

    base_fee_wei: int
    next_base_fee_wei: int
    priority_fee_wei: int
    max_fee_wei: int
    block: int
    priority_percentiles_wei: dict[int, int] = field(default_factory=dict)
