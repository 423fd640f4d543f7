"""Operators' conditional orders on pool prices: limit, stop-loss, take-profit, trailing stop, OCO.

The orders themselves live in the journal (``defi-agent order add``, Telegram ``/order``); the
engine hands the active ones to this strategy before each evaluation (``load_orders``) and
records what it decided after (``order_updates``), so the strategy stays pure: it never reads
the database, it only sees the order book it is given.

The price is the pair's pool mid price (the median over the fresh pools of the pair, or of
the configured ``dex``/``pool``), whole quote tokens per whole base token. An order fires on the
first snapshot whose price meets its condition:

=============  ===========================  ============================
kind           sell fires when price ...    buy fires when price ...
=============  ===========================  ============================
limit          >= trigger                   <= trigger
take_profit    >= trigger                   <= trigger
stop_loss      <= trigger                   >= trigger
trailing_stop  <= peak - distance           >= trough + distance
=============  ===========================  ============================

A trailing stop remembers the extreme price since it was placed (``peak``: the highest for a
sell, the lowest for a buy; journaled so it survives a restart); its distance is absolute
(quote per base) or a percentage of the peak. A limit order also never executes worse than its
limit: while the exact execution price (pool fee and impact included) is on the wrong side it
keeps waiting. The others execute at the market, bounded by the engine's slippage limit
(minimum out) and deadline like every swap.

Fired orders are ``triggered`` until their trade settles. A fill makes the order ``filled``
(and cancels the rest of its OCO group, in the same journal transaction). A trade that did not
happen puts the order back to ``pending`` with the reason, to fire again while its condition
holds. A refusal that is about the agent's state, not the order (paused, halted, its pair busy,
stale data, a cooldown, the gas cap: ``WAIT_REASONS``) costs nothing; any other (a revert, a
failure, an exposure or slippage refusal) counts, and after ``max_attempts`` of those the order
is ``failed`` with the last reason. An order the wallet cannot fund is
``failed`` at once. An order found ``triggered`` that this process did not propose (the agent
stopped while its trade was in flight) is ``failed``, never fired again: its trade may have
been mined, and an order must not trade twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from statistics import median
from typing import Any, ClassVar, Literal

from pydantic import Field

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import (
    ORDER_FAILED,
    ORDER_FILLED,
    ORDER_PENDING,
    ORDER_TRIGGERED,
    ConditionalOrder,
    Fill,
    NotFilled,
    Opportunity,
    OrderUpdate,
    Token,
)
from strategies._directional import (
    DEFAULT_SWAP_GAS,
    ExactSwap,
    best_exact_input,
    match_pending,
    mid_price,
    pool_swap_opportunity,
    pools_for_pair,
    proposal_of,
    resolve_token,
)
from strategies.base import BaseStrategy, StrategyParams

DexName = Literal["uniswap_v2", "sushiswap", "uniswap_v3"]

# Why a proposal may not trade that says nothing about the order itself: the engine's busy pair
# and the risk gate's refusals that lift by themselves or by the operator (``RejectReason``
# values). These re-arm the order without counting an attempt.
WAIT_REASONS = frozenset(
    {
        "pair busy",
        "paused",
        "halted_drawdown",
        "daily_loss",
        "stale_data",
        "cooldown",
        "gas_price_cap",
    }
)
FILLED_KEPT = 64  # filled orders remembered for a reorg to void


class OrdersParams(StrategyParams):
    """``[strategies.orders]``: where conditional orders read their price and how often a
    fired order may fail before it is given up. Orders are stored whether or not it is
    enabled; only an agent running with it enabled fires them."""

    enabled: bool = False
    dex: DexName | None = None
    pool: str | None = None
    max_attempts: int = Field(3, ge=1, le=100)
    gas_estimate: int = Field(DEFAULT_SWAP_GAS, gt=0)


def fires(order: ConditionalOrder, price: float, peak: float | None) -> bool:
    """Whether ``order``'s condition holds at ``price`` (``peak``: a trailing stop's extreme)."""
    sell = order.side == "sell"
    if order.kind == "trailing_stop":
        if peak is None:
            return False
        if order.trail_pct is not None:
            distance = peak * float(order.trail_pct) / 100
        else:
            distance = float(order.trail_distance or 0)
        return price <= peak - distance if sell else price >= peak + distance
    trigger = float(order.trigger_price or 0)
    if order.kind == "stop_loss":
        return price <= trigger if sell else price >= trigger
    return price >= trigger if sell else price <= trigger  # limit, take_profit


def next_peak(order: ConditionalOrder, price: float, peak: float | None) -> float | None:
    """A trailing stop's extreme after seeing ``price`` (None for other kinds)."""
    if order.kind != "trailing_stop":
        return None
    if peak is None:
        return price
    return max(peak, price) if order.side == "sell" else min(peak, price)


def to_units(amount: Decimal, token: Token) -> int:
    """Whole tokens -> smallest units, digits beyond the token's decimals dropped (floor)."""
    return int((amount * (Decimal(10) ** token.decimals)).to_integral_value(rounding=ROUND_DOWN))


@dataclass(frozen=True, slots=True)
class _Proposal:
    order_id: int
    token_in: str
    token_out: str
    amount_in: int


class OrdersStrategy(BaseStrategy[OrdersParams]):
    """Fires the journal's conditional orders when the pool price meets their condition."""

    name: ClassVar[str] = "orders"
    Params: ClassVar[type[StrategyParams]] = OrdersParams

    def __init__(self, params: OrdersParams) -> None:
        super().__init__(params)
        self.orders: dict[int, ConditionalOrder] = {}
        self._proposed: dict[str, _Proposal] = {}
        self._updates: list[OrderUpdate] = []
        # ended here, their journal rows not yet seen ended: never fired again meanwhile
        self._ended: set[int] = set()
        # order filled by each recent opportunity, until no reorg can void its fill
        self._filled: dict[str, int] = {}

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Nothing to restore: the orders (peaks included) are in the journal."""
        self.orders = {}
        self._proposed = {}
        self._updates = []
        self._ended = set()
        self._filled = {}

    # -- the engine's hooks ------------------------------------------------------------------

    def load_orders(self, orders: Sequence[ConditionalOrder]) -> None:
        """The journal's active orders, read by the engine just before ``evaluate``."""
        loaded: dict[int, ConditionalOrder] = {}
        for order in orders:
            if order.id in self._ended:
                continue
            known = self.orders.get(order.id)
            if known is None and order.status == ORDER_TRIGGERED:
                # triggered by an earlier process of the agent, its outcome unknown here
                self._end(
                    order,
                    ORDER_FAILED,
                    "the agent stopped while its trade was in flight: see `defi-agent report` "
                    "before placing it again",
                )
                continue
            if known is not None:
                # what this process decided (a trigger, a peak, a retry) wins over the row,
                # which may not have been written yet
                order = replace(
                    order, status=known.status, peak=known.peak, attempts=known.attempts
                )
            loaded[order.id] = order
        self._ended &= {order.id for order in orders}
        self.orders = loaded

    def order_updates(self) -> list[OrderUpdate]:
        """What changed since the last call, for the journal (the engine records it)."""
        updates, self._updates = self._updates, []
        return updates

    # -- deciding ------------------------------------------------------------------------------

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """Swaps for the orders whose condition the pool price meets now."""
        in_flight = {p.order_id for p in self._proposed.values()}
        busy_groups = {
            self.orders[i].oco_group
            for i in in_flight
            if i in self.orders and self.orders[i].oco_group is not None
        }
        balances = dict(portfolio.balances)
        opportunities: list[Opportunity] = []
        for order in sorted(self.orders.values(), key=lambda o: o.id):
            if order.id in in_flight or order.status != ORDER_PENDING:
                continue
            market = self._market(snapshot, order.pair)
            if isinstance(market, str):
                self._end(order, ORDER_FAILED, market)
                continue
            if market is None:
                continue  # no fresh pool of the pair in this snapshot: checked again next block
            base, quote, pools, price = market
            peak = next_peak(order, price, order.peak)
            if peak is not None and peak != order.peak:
                order = replace(order, peak=peak)
                self.orders[order.id] = order
                self._updates.append(OrderUpdate(order.id, peak=peak))
            if order.oco_group is not None and order.oco_group in busy_groups:
                continue  # a sibling's trade is in flight: its fill may cancel this one
            if not fires(order, price, peak):
                continue
            token_in, token_out = (base, quote) if order.side == "sell" else (quote, base)
            amount_in = to_units(order.amount, token_in)
            held = balances.get(token_in.address, 0)
            if amount_in <= 0 or held < amount_in:
                self._end(
                    order,
                    ORDER_FAILED,
                    f"the wallet holds {token_in.from_units(held):.6g} {token_in.symbol}, "
                    f"the order spends {order.amount} {token_in.symbol}",
                )
                continue
            swap = best_exact_input(pools, token_in.address, amount_in)
            if swap is None:
                continue  # no pool can fill it now; the condition is checked again next block
            if order.kind == "limit" and not _within_limit(order, swap, base, quote):
                continue  # at the mid price, but not yet at the limit after fee and impact
            opportunity = self._propose(snapshot, order, swap, token_in, token_out, price)
            balances[token_in.address] = held - amount_in
            if order.oco_group is not None:
                busy_groups.add(order.oco_group)
            opportunities.append(opportunity)
        return opportunities

    def _market(
        self, snapshot: MarketSnapshot, pair: str
    ) -> tuple[Token, Token, list[Any], float] | str | None:
        """(base, quote, pools, median mid price); a reason when the pair names a token the
        agent does not know (it never will: the order fails); None when no pool has a price."""
        base_ref, _, quote_ref = pair.partition("/")
        base = resolve_token(snapshot, base_ref)
        quote = resolve_token(snapshot, quote_ref)
        if base is None or quote is None:
            unknown = base_ref if base is None else quote_ref
            return f"{unknown} is not one of the agent's tokens (market.tokens)"
        params = self.params
        pools = pools_for_pair(
            snapshot,
            base.address,
            quote.address,
            frozenset({params.dex}) if params.dex and params.pool is None else None,
            params.pool,
        )
        prices = [p for p in (mid_price(pool, base, quote) for _, pool in pools) if p > 0]
        if not prices:
            return None
        return base, quote, pools, median(prices)

    def _propose(
        self,
        snapshot: MarketSnapshot,
        order: ConditionalOrder,
        swap: ExactSwap,
        token_in: Token,
        token_out: Token,
        price: float,
    ) -> Opportunity:
        opportunity_id = f"order{order.id}-b{snapshot.block}-a{order.attempts}"
        label = order.kind.replace("_", "-")
        self._proposed[opportunity_id] = _Proposal(
            order.id, token_in.address, token_out.address, swap.amount_in
        )
        self.orders[order.id] = replace(order, status=ORDER_TRIGGERED)
        self._updates.append(
            OrderUpdate(
                order.id,
                status=ORDER_TRIGGERED,
                reason=f"price {price:.6g} at block {snapshot.block}",
            )
        )
        return pool_swap_opportunity(
            snapshot,
            swap,
            strategy=self.name,
            opportunity_id=opportunity_id,
            token_in=token_in,
            token_out=token_out,
            gas_estimate=self.params.gas_estimate,
            note=f"order #{order.id} {label} {order.side} at {price:.6g}",
        )

    # -- settling ------------------------------------------------------------------------------

    def on_fill(self, fill: Fill | NotFilled) -> None:
        """A fill ends the order (and its OCO group); anything else re-arms or fails it."""
        opportunity_id = match_pending(self._proposed, fill)
        if opportunity_id is None:
            return
        proposal = self._proposed.pop(opportunity_id)
        order = self.orders.get(proposal.order_id)
        if order is None:
            return
        if isinstance(fill, Fill) and fill.amount_out > 0:
            self._end(order, ORDER_FILLED, _filled_reason(fill))
            self._filled[opportunity_id] = order.id
            for old in list(self._filled)[:-FILLED_KEPT]:
                del self._filled[old]
            for sibling in list(self.orders.values()):
                if order.oco_group is not None and sibling.oco_group == order.oco_group:
                    # the journal cancels them in the fill's own transaction
                    self.orders.pop(sibling.id, None)
                    self._ended.add(sibling.id)
            return
        reason = fill.reason if isinstance(fill, NotFilled) else "the trade returned nothing"
        if reason in WAIT_REASONS:
            # the agent cannot trade now (paused, busy pair, stale data...): the order waits
            # for it, armed, without spending one of its attempts
            self.orders[order.id] = replace(order, status=ORDER_PENDING)
            self._updates.append(
                OrderUpdate(order.id, status=ORDER_PENDING, reason=f"waiting: {reason}")
            )
            return
        attempts = order.attempts + 1
        if attempts >= self.params.max_attempts:
            self._end(order, ORDER_FAILED, f"{attempts} trades did not fill; last: {reason}")
            return
        self.orders[order.id] = replace(order, status=ORDER_PENDING, attempts=attempts)
        self._updates.append(
            OrderUpdate(
                order.id,
                status=ORDER_PENDING,
                reason=f"trade {attempts} did not fill ({reason}); armed again",
                attempts=attempts,
            )
        )

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        """A reorg moved the fill of a filled order (its reason names the new amounts) or voided
        it: the order is then ``failed``, not armed again. The operator sees why and decides
        (the price has moved on, its OCO siblings were cancelled, and the trade the order was
        placed for may have been done by hand since it was reported filled): an order never
        trades a second time on its own."""
        opportunity_id = proposal_of(before, self._filled)
        if opportunity_id is None:
            return
        order_id = self._filled[opportunity_id]
        if after is not None:
            reason = f"{_filled_reason(after)} (moved there by a reorg)"
            self._updates.append(OrderUpdate(order_id, status=ORDER_FILLED, reason=reason))
            return
        del self._filled[opportunity_id]
        reason = (
            f"its trade {before.tx_hash or before.intent_id} was undone by a reorg "
            f"(block {before.block_number} replaced): nothing traded; place it again if wanted"
        )
        self._updates.append(
            OrderUpdate(order_id, status=ORDER_FAILED, reason=reason, reorged=True)
        )

    def _end(self, order: ConditionalOrder, status: str, reason: str) -> None:
        self.orders.pop(order.id, None)
        self._ended.add(order.id)
        self._updates.append(OrderUpdate(order.id, status=status, reason=reason))


def _filled_reason(fill: Fill) -> str:
    return f"{fill.amount_in} in, {fill.amount_out} out (smallest units)" + (
        f" at block {fill.block_number}" if fill.block_number is not None else ""
    )


def _within_limit(order: ConditionalOrder, swap: ExactSwap, base: Token, quote: Token) -> bool:
    """Whether the exact execution price is at the limit or better (quote per base)."""
    limit = float(order.trigger_price or 0)
    if order.side == "sell":
        base_amount, quote_amount = swap.amount_in, swap.amount_out
    else:
        base_amount, quote_amount = swap.amount_out, swap.amount_in
    if base_amount <= 0:
        return False
    executed = quote.from_units(quote_amount) / base.from_units(base_amount)
    if math.isnan(executed):
        return False
    return executed >= limit if order.side == "sell" else executed <= limit
