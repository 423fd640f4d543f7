"""Grid trading on one pair: buy a lot when the price falls through a level, sell it one level up.

``GridBook`` is the whole decision logic, pure and deterministic: it sees prices and fills and
answers with ``GridOrder``s. The live ``GridStrategy`` feeds it the snapshot's pool price and
prices its orders with exact pool math; the backtest (``agent.backtest``) feeds it candle closes
and prices them with its cost model. Both call the same book, so they cannot drift apart.

Levels ``p_0 < ... < p_{N-1}`` split the price axis into bands; band ``k`` is
``p_{k-1} <= price < p_k`` (band 0 below the range, band N at or above the top). Lot ``i`` (for
``i < N-1``) is bought when the price falls below ``p_i`` and sold when it is back at or above
``p_{i+1}``; a lot is never bought again before it was sold, so no level fills twice. An order
that does not happen (refused, reverted, expired) waits for the next crossing of its level.

Leaving the range (below ``p_0`` or at/above ``p_{N-1}``) either stops the grid (it holds what
it has and trades no more; a grid started outside its range first waits for the price to come
in) or re-centres it: the same width and spacing around the current
price, the held lots placed on the sell levels above the price (nearest first); lots beyond
those are sold at the next price.

``quiet_range()`` is the price interval in which ``on_price`` would change nothing: within it
the book returns at once. A backtest uses the same interval to jump straight to the next candle
outside it, which is why its trades are identical to a loop calling the book on every candle.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from statistics import median
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import Field, ValidationInfo, field_validator

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Fill, NotFilled, Opportunity
from strategies._directional import (
    DEFAULT_SWAP_GAS,
    ExactSwap,
    best_exact_input,
    best_exact_output,
    match_pending,
    mid_price,
    pair_ref,
    pool_swap_opportunity,
    pools_for_pair,
    proposal_of,
    resolve_token,
)
from strategies.base import (
    BaseStrategy,
    Choice,
    FloatRange,
    IntRange,
    SearchDimension,
    StrategyParams,
)

DexName = Literal["uniswap_v2", "sushiswap", "uniswap_v3"]

# Per-lot status codes (ints keep the persisted state small and the hot loop cheap).
WAIT = 0  # the price is below the level: wait for it to rise to the level before arming
ARMED = 1  # the price is at/above the level: buy when it falls below
HOLDING = 2  # the lot is held: sell when the price reaches the next level up
PENDING_BUY = 3  # a buy was proposed and has not settled
PENDING_SELL = 4  # a sell was proposed and has not settled
HOLD_WAIT = 5  # held, its sell did not happen: wait for the price to dip below the sell level

STATE_VERSION = 1
SETTLED_KEPT = 64  # settled fills remembered for a reorg to undo


class GridParams(StrategyParams):
    """``[strategies.grid]``: levels between ``lower_price`` and ``upper_price`` on ``pair``.

    Prices are whole quote tokens per whole base token (USDC per WETH); ``order_size`` is the
    base amount bought at each level, in whole base tokens (converted exactly to smallest units
    with the token's decimals). ``max_slippage_bps`` bounds how far the exact execution price
    may be from the level that triggered the trade.
    """

    enabled: bool = False
    pair: str = "WETH/USDC"
    dex: DexName | None = "uniswap_v3"
    pool: str | None = None
    lower_price: Decimal = Field(Decimal(2500), gt=0)
    upper_price: Decimal = Field(Decimal(3500), gt=0)
    levels: int = Field(10, ge=2, le=500)
    spacing: Literal["arithmetic", "geometric"] = "arithmetic"
    order_size: Decimal = Field(Decimal("0.1"), gt=0)
    on_range_exit: Literal["stop", "recenter"] = "stop"
    max_slippage_bps: int = Field(100, ge=0, le=5_000)
    pending_ttl_blocks: int = Field(25, ge=1, le=10_000)
    gas_estimate: int = Field(DEFAULT_SWAP_GAS, gt=0)

    @classmethod
    def search_space(cls) -> dict[str, SearchDimension]:
        """Ranges around the defaults (a WETH/USDC grid near 3,000): edit the price bounds for
        another pair or price level. ``order_size`` is not searched: it scales profit and risk
        together, which is a sizing decision, not a fit to history."""
        return {
            "lower_price": FloatRange(2_000.0, 2_950.0, step=10.0),
            "upper_price": FloatRange(3_050.0, 4_000.0, step=10.0),
            "levels": IntRange(3, 60),
            "spacing": Choice(("arithmetic", "geometric")),
            "on_range_exit": Choice(("stop", "recenter")),
        }

    @field_validator("pair")
    @classmethod
    def _pair_ok(cls, value: str) -> str:
        return pair_ref(value)

    @field_validator("upper_price")
    @classmethod
    def _bounds_ordered(cls, upper: Decimal, info: ValidationInfo) -> Decimal:
        lower = info.data.get("lower_price")
        if lower is not None and upper <= lower:
            raise ValueError(f"must be > lower_price ({lower}) (got {upper})")
        return upper

    @property
    def base_ref(self) -> str:
        return self.pair.split("/")[0]

    @property
    def quote_ref(self) -> str:
        return self.pair.split("/")[1]


def grid_levels(
    lower: float, upper: float, count: int, spacing: Literal["arithmetic", "geometric"]
) -> list[float]:
    """``count`` level prices from ``lower`` to ``upper`` inclusive, ascending."""
    if count < 2 or not 0 < lower < upper:
        raise ValueError(f"need 0 < lower < upper and count >= 2 (got {lower}, {upper}, {count})")
    steps = count - 1
    if spacing == "arithmetic":
        step = (upper - lower) / steps
        levels = [lower + step * i for i in range(steps)] + [upper]
    else:
        ratio = upper / lower
        levels = [lower * ratio ** (i / steps) for i in range(steps)] + [upper]
    return levels


class GridOrder(NamedTuple):
    """A decision of the book. ``base_amount`` in smallest base units.

    ``side`` "buy": acquire ``base_amount`` for lot ``level`` (triggered below ``trigger_price``
    = ``p_level``). "sell": sell the lot's ``base_amount`` (triggered at ``trigger_price`` =
    ``p_level+1``); ``cost_quote`` is what the lot cost, in smallest quote units.
    """

    id: str
    level: int
    side: Literal["buy", "sell"]
    base_amount: int
    trigger_price: float
    next_price: float
    cost_quote: int
    created_tick: int


class GridBook:
    """The grid's state and decision logic; no I/O, deterministic, JSON round-trippable.

    ``order_size`` is in smallest base units. ``tick`` arguments are a monotonic clock the
    caller chooses (block number live, candle index in a backtest); they only age pending
    orders, never decide a trade.
    """

    def __init__(
        self,
        levels: list[float],
        order_size: int,
        on_range_exit: Literal["stop", "recenter"] = "stop",
        spacing: Literal["arithmetic", "geometric"] = "arithmetic",
        pending_ttl: int = 25,
    ) -> None:
        if len(levels) < 2 or any(a >= b for a, b in pairwise(levels)):
            raise ValueError("levels must be at least two strictly ascending prices")
        if order_size <= 0:
            raise ValueError("order_size must be positive (smallest base units)")
        self.levels = list(levels)
        self.order_size = order_size
        self.on_range_exit = on_range_exit
        self.spacing = spacing
        self.pending_ttl = pending_ttl
        lots = len(levels) - 1
        self.status = [WAIT] * lots
        self.lot_base = [0] * lots
        self.lot_cost = [0] * lots
        self.pending: dict[str, GridOrder] = {}
        self.last_band: int | None = None
        self.stopped = False
        self.recenter_price: float | None = None
        self.carry: list[tuple[int, int]] = []  # held (base, cost) lots awaiting a level
        self.seq = 0
        self.realized_quote = 0
        self.recenters = 0
        self.entered = False  # has the price been inside the range yet
        self._quiet: tuple[float, float] | None = None  # cache of quiet_range()

    # --- reading ------------------------------------------------------------------------

    def band(self, price: float) -> int:
        """Band index of ``price`` (0 below ``p_0``, len(levels) at or above the top)."""
        return bisect_right(self.levels, price)

    @property
    def inventory(self) -> int:
        """Base held by the grid's lots (smallest units), settled fills only."""
        return sum(self.lot_base) + sum(base for base, _ in self.carry)

    @property
    def filled_levels(self) -> list[int]:
        """Lots currently held (or being sold)."""
        return [i for i, s in enumerate(self.status) if s in (HOLDING, PENDING_SELL, HOLD_WAIT)]

    # --- deciding -----------------------------------------------------------------------

    def on_price(self, price: float, tick: int) -> list[GridOrder]:
        """Orders for the price ``price`` (quote per base): sells, then buys, in crossing order.

        The orders are pending until ``apply_fill`` or ``cancel``.
        """
        if self.pending:
            self._expire(tick)
        if self.stopped:
            return []
        quiet = self._quiet if self._quiet is not None else self.quiet_range()
        if quiet is not None and quiet[0] <= price < quiet[1]:
            return []
        self._quiet = None
        band = bisect_right(self.levels, price)
        if self.last_band is None:
            self._arm(band)
            self._after_move(band, price)
            return []
        self.last_band = band
        sells: list[GridOrder] = []
        buys: list[GridOrder] = []
        status = self.status
        for i in range(len(status)):
            state = status[i]
            if state == HOLDING:
                if band >= i + 2:
                    sells.append(self._order(i, "sell", self.lot_base[i], tick))
                    status[i] = PENDING_SELL
            elif state == ARMED:
                if band <= i:
                    buys.append(self._order(i, "buy", self.order_size, tick))
                    status[i] = PENDING_BUY
            elif state == WAIT:
                if band >= i + 1:
                    status[i] = ARMED
            elif state == HOLD_WAIT and band <= i + 1:
                status[i] = HOLDING
        self._after_move(band, price)
        # in the order the price crossed them: sells upwards, buys downwards (so when funds run
        # short the level nearest the price is the one bought)
        buys.reverse()
        return sells + buys

    def quiet_range(self) -> tuple[float, float] | None:
        """``(low, high)``: for ``low <= price < high`` ``on_price`` changes nothing.

        None while orders are pending or the grid was never priced (every price matters then).
        Empty (``low > high``) when the very next price acts whatever it is.
        """
        if self.stopped:
            return (-math.inf, math.inf)
        if self.pending or self.last_band is None or self.recenter_price is not None:
            return None
        status = self.status
        lots = len(status)
        # quiet bands are [lo, hi]; leaving the range (band 0 or N) acts, except for a stop-grid
        # still waiting outside for its first entry. list.index on the status list (and its
        # reverse) finds the binding lots at C speed.
        waiting = not self.entered and self.on_range_exit == "stop"
        lo, hi = (0, lots + 1) if waiting else (1, lots)
        backwards = status[::-1]
        if ARMED in status:  # the highest armed lot buys at band <= i
            lo = max(lo, lots - backwards.index(ARMED))
        if HOLD_WAIT in status:  # the highest waiting sell re-arms at band <= i + 1
            lo = max(lo, lots - backwards.index(HOLD_WAIT) + 1)
        if HOLDING in status:  # the lowest held lot sells at band >= i + 2
            hi = min(hi, status.index(HOLDING) + 1)
        if WAIT in status:  # the lowest waiting lot arms at band >= i + 1
            hi = min(hi, status.index(WAIT))
        if lo > hi:
            self._quiet = (math.inf, -math.inf)
        else:
            # band b >= lo  <=>  price >= p_{lo-1};  band b <= hi  <=>  price < p_hi
            low = self.levels[lo - 1] if lo > 0 else -math.inf
            high = self.levels[hi] if hi < len(self.levels) else math.inf
            self._quiet = (low, high)
        return self._quiet

    def apply_fill(self, order_id: str, base_amount: int, quote_amount: int) -> int:
        """Settle a pending order: ``base_amount`` traded for ``quote_amount`` (smallest units).

        Returns the realised profit of a sell in smallest quote units (0 for a buy).
        """
        order = self.pending.pop(order_id)
        i = order.level
        realized = 0
        if order.side == "buy":
            self.lot_base[i] = base_amount
            self.lot_cost[i] = quote_amount
            self.status[i] = HOLDING
        else:
            realized = quote_amount - self.lot_cost[i]
            self.realized_quote += realized
            self.lot_base[i] = 0
            self.lot_cost[i] = 0
            self.status[i] = ARMED
        self._quiet = None
        self._maybe_recenter()
        return realized

    def cancel(self, order_id: str) -> None:
        """The order did not happen (refused, reverted, expired): retry at the next crossing.

        A buy waits for the price to be back at its level before arming again, a sell for the
        price to dip below its sell level; so a refused order is not proposed on every tick.
        """
        order = self.pending.pop(order_id)
        self.status[order.level] = WAIT if order.side == "buy" else HOLD_WAIT
        self._quiet = None
        self._maybe_recenter()

    def undo_fill(
        self, level: int, side: str, base_amount: int, quote_amount: int, cost: int
    ) -> None:
        """A settled fill a reorg voided (``cost``: the lot's cost, for a sell). A bought lot is
        forgotten and its level armed to buy again (a sell of it in flight is dropped); a sold
        lot is held again, on its level when free, else carried, and its profit taken back."""
        if side == "buy":
            if self.lot_base[level] == base_amount and self.status[level] in (
                HOLDING,
                HOLD_WAIT,
                PENDING_SELL,
            ):
                self.pending = {
                    k: o for k, o in self.pending.items() if (o.level, o.side) != (level, "sell")
                }
                self.lot_base[level] = self.lot_cost[level] = 0
                self.status[level] = ARMED
            elif (base_amount, quote_amount) in self.carry:
                self.carry.remove((base_amount, quote_amount))
        else:
            self.realized_quote -= quote_amount - cost
            if self.status[level] in (WAIT, ARMED):
                self.lot_base[level], self.lot_cost[level] = base_amount, cost
                self.status[level] = HOLDING
            else:
                self.carry.append((base_amount, cost))
        self._quiet = None

    def revise_fill(
        self, level: int, side: str, before: tuple[int, int], after: tuple[int, int]
    ) -> None:
        """A settled fill a reorg moved: its ``(base, quote)`` amounts are now ``after``."""
        if side == "buy":
            if self.lot_base[level] == before[0] and self.lot_cost[level] == before[1]:
                self.lot_base[level], self.lot_cost[level] = after
        else:
            self.realized_quote += after[1] - before[1]

    # --- internals ----------------------------------------------------------------------

    def _order(self, level: int, side: Literal["buy", "sell"], base: int, tick: int) -> GridOrder:
        self.seq += 1
        order = GridOrder(
            id=f"grid-{self.seq}-{side}-L{level}",
            level=level,
            side=side,
            base_amount=base,
            trigger_price=self.levels[level + 1] if side == "sell" else self.levels[level],
            next_price=self.levels[level + 1],
            cost_quote=self.lot_cost[level] if side == "sell" else 0,
            created_tick=tick,
        )
        self.pending[order.id] = order
        return order

    def _arm(self, band: int) -> None:
        """First price seen (or a new grid): levels at/below it arm, carried lots get levels."""
        self.last_band = band
        for i, state in enumerate(self.status):
            if state in (WAIT, ARMED):
                self.status[i] = ARMED if band >= i + 1 else WAIT
        if self.carry:
            lots = len(self.status)
            # held lots go to the levels just above the price first (they sell on the next
            # rise), then to the levels below it, nearest first
            order = [i for i in range(band, lots)] + [i for i in range(min(band, lots) - 1, -1, -1)]
            free = [i for i in order if self.status[i] in (WAIT, ARMED)]
            for i, (base, cost) in zip(free, self.carry, strict=False):
                self.lot_base[i] = base
                self.lot_cost[i] = cost
                self.status[i] = HOLDING
            self.carry = self.carry[len(free) :]

    def _after_move(self, band: int, price: float) -> None:
        if band != 0 and band != len(self.levels):
            self.entered = True
            return
        if self.on_range_exit == "stop":
            # a grid started outside its range waits for the price to come in; only leaving
            # the range stops it
            if self.entered:
                self.stopped = True
            return
        self.recenter_price = price
        self._maybe_recenter()

    def _maybe_recenter(self) -> None:
        if self.recenter_price is None or self.pending:
            return
        price = self.recenter_price
        self.recenter_price = None
        lower, upper = self.levels[0], self.levels[-1]
        if self.spacing == "geometric":
            half = math.sqrt(upper / lower)
            new_lower, new_upper = price / half, price * half
        else:
            half_width = (upper - lower) / 2
            new_lower, new_upper = price - half_width, price + half_width
        if new_lower <= 0:
            # an arithmetic grid this wide cannot be centred this low; stop rather than guess
            self.stopped = True
            return
        held = [
            (self.lot_base[i], self.lot_cost[i])
            for i, s in enumerate(self.status)
            if s in (HOLDING, HOLD_WAIT)
        ]
        lots = len(self.status)
        self.levels = grid_levels(new_lower, new_upper, len(self.levels), self.spacing)
        self.status = [WAIT] * lots
        self.lot_base = [0] * lots
        self.lot_cost = [0] * lots
        self.carry = held + self.carry
        self.recenters += 1
        self.entered = True
        self._arm(bisect_right(self.levels, price))

    def _expire(self, tick: int) -> None:
        for order_id, order in list(self.pending.items()):
            if tick - order.created_tick > self.pending_ttl:
                self.cancel(order_id)

    # --- persistence --------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state; amounts as decimal strings (they may exceed 64 bits)."""
        return {
            "version": STATE_VERSION,
            "levels": list(self.levels),
            "order_size": str(self.order_size),
            "status": list(self.status),
            "lot_base": [str(v) for v in self.lot_base],
            "lot_cost": [str(v) for v in self.lot_cost],
            "pending": [
                {
                    "id": o.id,
                    "level": o.level,
                    "side": o.side,
                    "base_amount": str(o.base_amount),
                    "trigger_price": o.trigger_price,
                    "next_price": o.next_price,
                    "cost_quote": str(o.cost_quote),
                    "created_tick": o.created_tick,
                }
                for o in self.pending.values()
            ],
            "last_band": self.last_band,
            "stopped": self.stopped,
            "recenter_price": self.recenter_price,
            "carry": [[str(b), str(c)] for b, c in self.carry],
            "seq": self.seq,
            "realized_quote": str(self.realized_quote),
            "recenters": self.recenters,
            "entered": self.entered,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load ``to_state()`` output. Raises ``ValueError`` when it does not fit this grid."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown grid state version {state.get('version')!r}")
        levels = [float(v) for v in state["levels"]]
        if len(levels) != len(self.levels):
            raise ValueError("saved grid has a different number of levels")
        self.levels = levels
        self.status = [int(v) for v in state["status"]]
        self.lot_base = [int(v) for v in state["lot_base"]]
        self.lot_cost = [int(v) for v in state["lot_cost"]]
        self.pending = {}
        for raw in state["pending"]:
            order = GridOrder(
                id=str(raw["id"]),
                level=int(raw["level"]),
                side="buy" if raw["side"] == "buy" else "sell",
                base_amount=int(raw["base_amount"]),
                trigger_price=float(raw["trigger_price"]),
                next_price=float(raw["next_price"]),
                cost_quote=int(raw["cost_quote"]),
                created_tick=int(raw["created_tick"]),
            )
            self.pending[order.id] = order
        last_band = state["last_band"]
        self.last_band = None if last_band is None else int(last_band)
        self.stopped = bool(state["stopped"])
        recenter_price = state["recenter_price"]
        self.recenter_price = None if recenter_price is None else float(recenter_price)
        self.carry = [(int(b), int(c)) for b, c in state["carry"]]
        self.seq = int(state["seq"])
        self.realized_quote = int(state["realized_quote"])
        self.recenters = int(state["recenters"])
        self.entered = bool(state.get("entered", True))
        self._quiet = None


def held_lots(saved_book: Mapping[str, Any]) -> list[tuple[int, int]]:
    """``(base, cost)`` of every lot a saved book holds (including ones being sold)."""
    lots = [
        (int(base), int(cost))
        for state, base, cost in zip(
            saved_book["status"], saved_book["lot_base"], saved_book["lot_cost"], strict=True
        )
        if int(state) in (HOLDING, PENDING_SELL, HOLD_WAIT)
    ]
    return lots + [(int(b), int(c)) for b, c in saved_book.get("carry", [])]


def book_from_params(params: GridParams, base_decimals: int) -> GridBook:
    """A fresh ``GridBook`` for ``params``; ``order_size`` converted exactly to smallest units."""
    order_size = int(params.order_size * (Decimal(10) ** base_decimals))
    levels = grid_levels(
        float(params.lower_price), float(params.upper_price), params.levels, params.spacing
    )
    return GridBook(
        levels,
        order_size,
        on_range_exit=params.on_range_exit,
        spacing=params.spacing,
        pending_ttl=params.pending_ttl_blocks,
    )


class GridStrategy(BaseStrategy[GridParams]):
    """Live grid: the ``GridBook`` on the pair's pool price, orders priced by exact pool math."""

    name: ClassVar[str] = "grid"
    Params: ClassVar[type[StrategyParams]] = GridParams

    def __init__(self, params: GridParams) -> None:
        super().__init__(params)
        self.book: GridBook | None = None
        self.base_decimals = 0  # of the pair's base token, known with the book
        self._saved: dict[str, Any] | None = None
        self._proposed: dict[str, _Proposal] = {}
        # fills settled on the book, by order id, until no reorg can undo them:
        # [level, side, base, quote, lot cost before a sell]
        self._settled: dict[str, list[Any]] = {}

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Rebuild the saved book now when it records the base token's decimals (so fills
        settled while the agent was down can be applied before the first snapshot), else when
        the first snapshot tells them."""
        self.book = None
        self._saved = dict(state) if state else None
        self._proposed = {}
        self._settled = {}
        if self._saved and "base_decimals" in self._saved:
            self._ensure_book(int(self._saved["base_decimals"]))

    def state(self) -> dict[str, Any]:
        """The book, the config it was built from and the proposals awaiting fills."""
        if self.book is None:
            return dict(self._saved) if self._saved else {}
        return {
            "book": self.book.to_state(),
            "config": self._config_key(),
            "base_decimals": self.base_decimals,
            "proposed": {
                order_id: [p.token_in, p.token_out, str(p.amount_in)]
                for order_id, p in self._proposed.items()
                if order_id in self.book.pending
            },
            "settled": {
                k: [lv, side, str(b), str(q), str(c)]
                for k, (lv, side, b, q, c) in self._settled.items()
            },
        }

    def _config_key(self) -> dict[str, Any]:
        p = self.params
        return {
            "pair": p.pair,
            "lower_price": str(p.lower_price),
            "upper_price": str(p.upper_price),
            "levels": p.levels,
            "spacing": p.spacing,
            "order_size": str(p.order_size),
            "on_range_exit": p.on_range_exit,
        }

    def _ensure_book(self, base_decimals: int) -> GridBook:
        if self.book is not None:
            return self.book
        book = book_from_params(self.params, base_decimals)
        saved = self._saved
        if saved and "book" in saved:
            if saved.get("config") == self._config_key():
                book.restore(saved["book"])
                self._settled = {
                    k: [int(lv), str(side), int(b), int(q), int(c)]
                    for k, (lv, side, b, q, c) in saved.get("settled", {}).items()
                }
            else:
                # The operator changed the grid (which also restarts a stopped one): new levels,
                # but every held lot is kept (carried onto them) so nothing is bought twice.
                book.carry = held_lots(saved["book"])
                book.realized_quote = int(saved["book"].get("realized_quote", 0))
                book.seq = int(saved["book"].get("seq", 0))
            self._proposed = {
                order_id: _Proposal(str(t_in), str(t_out), int(amount))
                for order_id, (t_in, t_out, amount) in saved.get("proposed", {}).items()
                if order_id in book.pending
            }
        self.book = book
        self.base_decimals = base_decimals
        self._saved = None
        return book

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """Swaps for the levels the pool price crossed since the last tick (usually none)."""
        params = self.params
        base = resolve_token(snapshot, params.base_ref)
        quote = resolve_token(snapshot, params.quote_ref)
        if base is None or quote is None:
            return []
        pools = pools_for_pair(
            snapshot,
            base.address,
            quote.address,
            frozenset({params.dex}) if params.dex and params.pool is None else None,
            params.pool,
        )
        if not pools:
            return []
        prices = [p for p in (mid_price(pool, base, quote) for _, pool in pools) if p > 0]
        if not prices:
            return []
        book = self._ensure_book(base.decimals)
        orders = book.on_price(median(prices), snapshot.block)
        opportunities: list[Opportunity] = []
        slip = params.max_slippage_bps / 10_000
        base_balance = portfolio.balances.get(base.address, 0)
        quote_balance = portfolio.balances.get(quote.address, 0)
        for order in orders:
            swap: ExactSwap | None
            if order.side == "buy":
                swap = best_exact_output(pools, base.address, order.base_amount)
                limit = order.trigger_price * (1 + slip)
                ok = (
                    swap is not None
                    and swap.amount_in <= quote_balance
                    and _price(swap.amount_in, quote.decimals, swap.amount_out, base.decimals)
                    <= limit
                )
                token_in, token_out = quote, base
            else:
                swap = best_exact_input(pools, base.address, order.base_amount)
                limit = order.trigger_price * (1 - slip)
                ok = (
                    swap is not None
                    and order.base_amount <= base_balance
                    and _price(swap.amount_out, quote.decimals, swap.amount_in, base.decimals)
                    >= limit
                )
                token_in, token_out = base, quote
            if not ok or swap is None:
                book.cancel(order.id)
                continue
            if order.side == "buy":
                quote_balance -= swap.amount_in
                # the round trip this buy opens earns one level step on the lot
                step = order.next_price - order.trigger_price
                gross = base.from_units(order.base_amount) * step
                gross *= snapshot.prices_usd.get(quote.address, 1.0)
            else:
                base_balance -= order.base_amount
                gross = snapshot.value_usd(quote.address, swap.amount_out - order.cost_quote)
            opportunities.append(
                pool_swap_opportunity(
                    snapshot,
                    swap,
                    strategy=self.name,
                    opportunity_id=order.id,
                    token_in=token_in,
                    token_out=token_out,
                    gas_estimate=params.gas_estimate,
                    gross_profit_usd=gross,
                    note=f"grid {order.side} lot {order.level} at {order.trigger_price:.6g}",
                )
            )
            # remember what was proposed so the fill can be matched by its input amount
            self._proposed[order.id] = _Proposal(
                token_in.address, token_out.address, swap.amount_in
            )
        return opportunities

    def on_fill(self, fill: Fill | NotFilled) -> None:
        """Settle the lot the fill belongs to; a proposal that did not fill re-arms it."""
        book = self.book
        if book is None:
            return
        # proposals whose order already expired are dropped: their lot was re-armed
        self._proposed = {k: v for k, v in self._proposed.items() if k in book.pending}
        order_id = match_pending(self._proposed, fill)
        if order_id is None:
            return
        self._proposed.pop(order_id, None)
        order = book.pending[order_id]
        if isinstance(fill, NotFilled) or fill.amount_out <= 0:
            book.cancel(order_id)
        else:
            base, quote = _base_quote(order.side, fill)
            cost = book.lot_cost[order.level]
            book.apply_fill(order_id, base, quote)
            self._settled[order_id] = [order.level, order.side, base, quote, cost]
            # a reorg undoes a fill within a few blocks: the last few are plenty
            for old in list(self._settled)[:-SETTLED_KEPT]:
                del self._settled[old]

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        """A reorg voided a settled fill (its lot is forgotten, or held again when sold) or
        moved it (the lot's amounts, or the sale's profit, follow the new receipt)."""
        order_id = proposal_of(before, self._settled)
        if self.book is None or order_id is None:
            return
        level, side, base, quote, cost = self._settled[order_id]
        if after is None:
            del self._settled[order_id]
            self.book.undo_fill(level, side, base, quote, cost)
        else:
            now = _base_quote(side, after)
            self.book.revise_fill(level, side, (base, quote), now)
            self._settled[order_id] = [level, side, *now, cost]


@dataclass(frozen=True, slots=True)
class _Proposal:
    token_in: str
    token_out: str
    amount_in: int


def _base_quote(side: str, fill: Fill) -> tuple[int, int]:
    """``(base, quote)`` amounts of a grid fill (a buy pays quote for base)."""
    if side == "buy":
        return fill.amount_out, fill.amount_in
    return fill.amount_in, fill.amount_out


def _price(quote_amount: int, quote_decimals: int, base_amount: int, base_decimals: int) -> float:
    """Whole quote per whole base for an executed pair of amounts (smallest units in)."""
    if base_amount <= 0:
        return math.inf
    return (quote_amount / 10.0**quote_decimals) / (base_amount / 10.0**base_decimals)
