"""Frozen value types shared by the layers (feeds, dex, strategies, risk, execution).

Amounts that are sent, compared with a minimum or stored as fills are ``int`` in the token's
smallest unit. ``float`` appears only for USD valuations and scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
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
        return amount_wei / 10.0**self.decimals


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
    """EIP-1559 fee picture for the next block, in wei per gas.

    On a legacy-gas chain (``legacy``) there is one price per gas: it is the base fee, the
    next base fee and the max fee, with a zero priority fee, and transactions are type 0.
    """

    base_fee_wei: int
    next_base_fee_wei: int
    priority_fee_wei: int
    max_fee_wei: int
    block: int
    priority_percentiles_wei: dict[int, int] = field(default_factory=dict)
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class RouteHop:
    """One swap of a route: ``token_in`` -> ``token_out`` through ``pool`` (a V2 pair or V3 pool).

    ``dex`` names the deployment ("uniswap_v2", "sushiswap", "uniswap_v3"); ``kind`` is "v2" or
    "v3"; ``fee_pips`` is the pool fee in hundredths of a basis point (3000 = 0.3 %). An
    aggregator hop (DCA's 1inch route) is ``dex="oneinch"``, ``kind="aggregator"``, ``pool=""``:
    1inch picks the pools when it builds the swap.
    """

    pool: str
    dex: str
    kind: str
    token_in: str
    token_out: str
    fee_pips: int = 3000


@dataclass(frozen=True, slots=True)
class Intent:
    """A decision to trade, handed from strategy/risk to the executor. Journaled before any I/O.

    ``kind`` is "swap" (a directional trade through a router) or "arb" (an atomic cycle through
    the ArbExecutor, ``token_in == token_out``). Amounts are ``int`` in smallest units:
    ``amount_in`` of ``token_in``; ``min_amount_out`` and ``predicted_amount_out`` of
    ``token_out``. ``predicted_profit`` is in ``token_in`` units (arb: predicted final minus
    start balance; swap: 0, a directional trade is marked to market by the portfolio).
    ``predicted_profit_usd`` is for reporting only. ``deadline`` is a unix timestamp (seconds).
    """

    id: str
    strategy: str
    kind: str
    route: tuple[RouteHop, ...]
    token_in: str
    token_out: str
    amount_in: int
    min_amount_out: int
    predicted_amount_out: int
    predicted_profit: int
    predicted_profit_usd: float
    deadline: int
    opportunity_id: str | None = None
    # Predicted costs, wei of the native coin: L2 execution and the L1 data fee.
    predicted_gas_cost_wei: int = 0
    predicted_l1_fee_wei: int = 0


# ``Fill.finality``: awaiting ``execution.confirmations``, final, or void (reorged out).
FILL_PENDING = "pending"
FILL_FINAL = "final"
FILL_REORGED = "reorged"
FILL_FINALITY_LABELS = {
    FILL_PENDING: "pending confirmation",
    FILL_FINAL: "final",
    FILL_REORGED: "reorged out",
}


@dataclass(frozen=True, slots=True)
class Fill:
    """What an intent actually did, beside what was predicted. Amounts in smallest units.

    ``amount_in`` / ``amount_out`` are realised (from the receipt's Transfer logs and balance
    deltas, or from local math in paper mode); ``profit`` is realised, in ``token_in`` units, on
    the same definition as ``Intent.predicted_profit``. ``gas_cost_wei`` is everything the
    chain charged, in wei of the native coin: gas_used x effective gas price, an OP-stack
    operator fee, and the L1 data fee (``l1_fee_wei``; on Arbitrum it is inside gas_used). A
    paper fill pays what was predicted. ``profit_usd`` is ``profit`` in USD at the prices of
    the fill's block (journaled with the fill; the figure the fill alert shows).
    ``opportunity_id`` names the opportunity the intent was made from. ``block_hash`` is the
    hash of the receipt's block; ``finality`` is :data:`FILL_PENDING` until the chain is
    ``execution.confirmations`` blocks past it with that block still canonical, then
    :data:`FILL_FINAL`; :data:`FILL_REORGED` when a reorg took it out of the chain (the fill
    is void: it counts in no position or PnL). Paper fills are final at once.
    """

    intent_id: str
    mode: str
    tx_hash: str | None
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    profit: int
    predicted_amount_in: int
    predicted_amount_out: int
    predicted_profit: int
    gas_used: int = 0
    gas_cost_wei: int = 0
    # The L1 data fee part of ``gas_cost_wei`` (L2s), and the predicted costs (L2 execution
    # with any operator fee; L1).
    l1_fee_wei: int = 0
    predicted_gas_cost_wei: int = 0
    predicted_l1_fee_wei: int = 0
    block_number: int | None = None
    predicted_profit_usd: float | None = None
    profit_usd: float | None = None
    opportunity_id: str | None = None
    block_hash: str | None = None
    finality: str = FILL_FINAL


@dataclass(frozen=True, slots=True)
class NotFilled:
    """A proposal that will not fill and traded nothing: refused by the risk gate, skipped
    because its token pair was busy, failed before the chain, or reverted.

    ``intent_id`` is the intent's id when one was started, else the opportunity's id (a
    strategy matches either to what it proposed). Amounts are the predicted ones, in smallest
    units. ``reason`` is the refusal reason or the failure, for logs.
    """

    intent_id: str
    opportunity_id: str | None
    token_in: str
    token_out: str
    predicted_amount_in: int
    predicted_amount_out: int
    reason: str


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A scored trade a strategy proposes; the engine turns approved ones into an ``Intent``.

    Amounts are ``int`` in smallest units: ``amount_in`` of ``token_in``,
    ``predicted_amount_out`` of ``token_out`` (for an arbitrage cycle ``token_in == token_out``
    and ``predicted_profit = predicted_amount_out - amount_in``; for a directional trade 0).
    USD figures are for scoring and reporting only: ``gross_profit_usd`` before gas,
    ``gas_cost_usd`` for ``gas_estimate`` gas units at the snapshot's fee, and
    ``net_profit_usd = gross_profit_usd - gas_cost_usd`` (pool fees are already inside the
    exact amounts). ``notional_usd`` is the USD value of ``amount_in``; ``price_impact_bps`` the
    worst hop's impact; ``block`` the snapshot block the prediction was made at.
    """

    id: str
    strategy: str
    kind: str  # "arb" | "swap"
    route: tuple[RouteHop, ...]
    token_in: str
    token_out: str
    amount_in: int
    predicted_amount_out: int
    predicted_profit: int
    gross_profit_usd: float
    gas_estimate: int
    gas_cost_usd: float
    net_profit_usd: float
    notional_usd: float
    price_impact_bps: float
    block: int
    note: str = ""
    # The L1 data fee (wei) of the transaction that would carry it out (L2s; 0 elsewhere).
    # Once priced, ``gas_cost_usd`` and ``net_profit_usd`` include it (and an operator fee).
    l1_fee_wei: int = 0
    l1_fee_usd: float = 0.0
    # The predicted L2 execution cost (wei): gas estimate x the fee it was priced at, plus an
    # OP-stack operator fee for that gas.
    gas_cost_wei: int = 0

    @property
    def score(self) -> float:
        """Ranking key: net USD edge (higher first)."""
        return self.net_profit_usd


# Conditional orders (``defi-agent order add``): statuses as the journal stores them.
ORDER_PENDING = "pending"  # waiting for its price condition
ORDER_TRIGGERED = "triggered"  # its condition held: a trade was proposed and has not settled
ORDER_FILLED = "filled"
ORDER_CANCELLED = "cancelled"
ORDER_FAILED = "failed"
ORDER_ACTIVE = (ORDER_PENDING, ORDER_TRIGGERED)
ORDER_KINDS = ("limit", "stop_loss", "take_profit", "trailing_stop")


@dataclass(frozen=True, slots=True)
class ConditionalOrder:
    """An operator's conditional order on a pool price, as the journal holds it.

    ``pair`` is ``BASE/QUOTE``; prices are whole quote tokens per whole base token (the pool's
    mid price). ``amount`` is exact, in whole tokens of what the order spends: base for a
    sell, quote for a buy (converted to smallest units with the token's decimals when priced).
    A trailing stop trails ``peak`` (the highest price seen for a sell, the lowest for a buy)
    by ``trail_distance`` (quote per base) or ``trail_pct`` (percent). Orders sharing an
    ``oco_group`` are one-cancels-the-other: the first to fill cancels the rest.
    """

    id: int
    kind: str  # one of ORDER_KINDS
    side: str  # "buy" | "sell"
    pair: str
    amount: Decimal
    trigger_price: Decimal | None = None
    trail_distance: Decimal | None = None
    trail_pct: Decimal | None = None
    peak: float | None = None
    oco_group: int | None = None
    status: str = ORDER_PENDING
    reason: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """What the orders strategy learned about one order, for the journal to record: a new
    ``status`` (with its ``reason``) and/or a new trailing ``peak``; ``attempts`` counts the
    trades proposed for it that did not fill. ``reorged``: its fill was voided by a reorg, so a
    ``filled`` order becomes ``failed``."""

    order_id: int
    status: str | None = None
    reason: str = ""
    peak: float | None = None
    attempts: int | None = None
    reorged: bool = False
