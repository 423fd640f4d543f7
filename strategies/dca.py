"""Dollar-cost averaging: buy on a schedule, more after a dip and when the crowd is fearful.

``DcaSchedule`` is the decision logic, pure and deterministic: given the time, the price, the
recent high and the sentiment score it says whether to buy now and how much. The live
``DcaStrategy`` feeds it the snapshot; the backtest feeds it candles, jumping straight to the
next due time (``next_due_ts``) instead of asking on every candle, which gives the same buys
because the schedule answers "not yet" before that time.

Amounts are ``int`` in the spend token's smallest units. Multipliers are applied as exact
fractions, so a base amount times 1.5 is exact.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from statistics import median
from typing import Any, ClassVar, Literal

from croniter import croniter
from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Opportunity, RouteHop
from strategies._directional import (
    DEFAULT_SWAP_GAS,
    best_exact_input,
    hop_for,
    mid_price,
    pools_for_pair,
    price_impact_bps,
    resolve_token,
    swap_opportunity,
    token_ref,
)
from strategies.base import (
    BaseStrategy,
    Choice,
    FloatRange,
    SearchDimension,
    StrategyParams,
)

DEFAULT_INTERVAL_S = 86_400.0
STATE_VERSION = 1
ONEINCH_DEX = "oneinch"


class DcaParams(StrategyParams):
    """``[strategies.dca]``: buy ``buy_token`` with ``amount`` whole ``spend_token`` per slot.

    Schedule: every ``interval_s`` seconds or on the 5-field ``cron`` expression (UTC); with
    neither, daily. After a drawdown of at least ``dip_threshold_pct`` percent from the high of
    the last ``dip_lookback_s`` seconds the amount is multiplied by ``dip_multiplier``; when the
    buy token's sentiment (-1..1, stale -> neutral 0) is at or below ``fear_threshold`` by
    ``fear_multiplier``; the product is capped at ``max_multiplier``.

    ``route``: "pools" buys through the best direct pool, "oneinch" through the 1inch route,
    "auto" through whichever pays out more. The 1inch quote is only considered when the
    snapshot says an aggregator route can be executed (``aggregator_executable``: a real 1inch
    client builds the swap, live or fork mode); otherwise "auto" uses the pools and "oneinch"
    buys nothing, so no intent is ever emitted that the executor could not carry out.
    """

    enabled: bool = False
    buy_token: str = "WETH"
    spend_token: str = "USDC"
    amount: Decimal = Field(Decimal(100), gt=0)
    interval_s: float | None = Field(None, gt=0)
    cron: str | None = None
    dip_lookback_s: float = Field(7 * 86_400.0, gt=0)
    dip_threshold_pct: float = Field(10.0, gt=0, lt=100)
    dip_multiplier: float = Field(1.5, ge=1, le=10)
    fear_threshold: float = Field(-0.3, ge=-1, le=1)
    fear_multiplier: float = Field(1.25, ge=1, le=10)
    max_multiplier: float = Field(3.0, ge=1, le=10)
    route: Literal["auto", "pools", "oneinch"] = "auto"
    gas_estimate: int = Field(DEFAULT_SWAP_GAS, gt=0)
    # The ML signal (agent.research.signal): 0 is off. With weight w and the model's probability
    # p that the next candle closes higher, the amount is multiplied by max(0, 1 + w*(2p - 1))
    # (before the max_multiplier cap); a slot weighted down to nothing is skipped.
    ml_weight: float = Field(0.0, ge=0, le=4)
    ml_candle_s: float = Field(3_600.0, gt=0)
    ml_retrain_every: int = Field(500, ge=1)
    ml_train_window: int = Field(5_000, ge=200)

    @classmethod
    def search_space(cls) -> dict[str, SearchDimension]:
        """The schedule and its boosts; ``amount`` (sizing) and the route are not searched."""
        return {
            "interval_s": Choice((3_600.0, 4 * 3_600.0, 12 * 3_600.0, 86_400.0)),
            "dip_lookback_s": Choice((86_400.0, 3 * 86_400.0, 7 * 86_400.0, 14 * 86_400.0)),
            "dip_threshold_pct": FloatRange(1.0, 25.0, step=0.5),
            "dip_multiplier": FloatRange(1.0, 4.0, step=0.25),
            "max_multiplier": FloatRange(1.0, 5.0, step=0.25),
        }

    @model_validator(mode="before")
    @classmethod
    def _default_schedule(cls, data: Any) -> Any:
        # TOML has no null: "no interval" is spelt by leaving the key out; neither means daily
        if isinstance(data, dict) and "interval_s" not in data and "cron" not in data:
            return {**data, "interval_s": DEFAULT_INTERVAL_S}
        return data

    @field_validator("buy_token", "spend_token")
    @classmethod
    def _token(cls, value: str) -> str:
        return token_ref(value)

    @field_validator("spend_token")
    @classmethod
    def _different_tokens(cls, spend_token: str, info: ValidationInfo) -> str:
        buy_token = info.data.get("buy_token")
        if buy_token is not None and spend_token.lower() == buy_token.lower():
            raise ValueError("must differ from buy_token")
        return spend_token

    @field_validator("cron")
    @classmethod
    def _cron_valid(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError("must be a 5-field cron expression like '0 9 * * 1'")
        if info.data.get("interval_s") is not None:
            raise ValueError("set only one of interval_s and cron (remove interval_s)")
        return value

    @property
    def schedule_interval_s(self) -> float | None:
        """The interval in seconds, or None when ``cron`` drives the schedule."""
        if self.cron is not None:
            return None
        return self.interval_s if self.interval_s is not None else DEFAULT_INTERVAL_S


@dataclass(frozen=True, slots=True)
class DcaOrder:
    """One scheduled buy: spend ``amount_in`` (smallest spend-token units) at ``ts`` (unix s)."""

    id: str
    ts: float
    amount_in: int
    multiplier: float
    drawdown_pct: float
    sentiment: float


class DcaSchedule:
    """When and how much to buy. State: the next due time and the last buy time (unix s)."""

    def __init__(
        self,
        base_amount: int,
        *,
        interval_s: float | None = DEFAULT_INTERVAL_S,
        cron: str | None = None,
        dip_threshold_pct: float = 10.0,
        dip_multiplier: float = 1.0,
        fear_threshold: float = -0.3,
        fear_multiplier: float = 1.0,
        max_multiplier: float = 1.0,
        ml_weight: float = 0.0,
    ) -> None:
        if (interval_s is None) == (cron is None):
            raise ValueError("give exactly one of interval_s or cron")
        if base_amount <= 0:
            raise ValueError("base_amount must be positive (smallest spend-token units)")
        self.base_amount = base_amount
        self.interval_s = interval_s
        self.cron = cron
        self.dip_threshold_pct = dip_threshold_pct
        self.dip_multiplier = Fraction(dip_multiplier)
        self.fear_threshold = fear_threshold
        self.fear_multiplier = Fraction(fear_multiplier)
        self.max_multiplier = Fraction(max_multiplier)
        self.ml_weight = ml_weight
        self.next_due_ts: float | None = None
        self.last_buy_ts: float | None = None
        self.buys = 0
        self._cron_iter: croniter | None = None

    @classmethod
    def from_params(cls, params: DcaParams, spend_decimals: int) -> DcaSchedule:
        """The schedule for ``params``; ``amount`` converted exactly to smallest units."""
        return cls(
            int(params.amount * (Decimal(10) ** spend_decimals)),
            interval_s=params.schedule_interval_s,
            cron=params.cron,
            dip_threshold_pct=params.dip_threshold_pct,
            dip_multiplier=params.dip_multiplier,
            fear_threshold=params.fear_threshold,
            fear_multiplier=params.fear_multiplier,
            max_multiplier=params.max_multiplier,
            ml_weight=params.ml_weight,
        )

    def _cron_after(self, ts: float) -> float:
        """The first cron time strictly after ``ts`` (UTC)."""
        assert self.cron is not None
        if self._cron_iter is None:
            # parsing the expression is the slow part; one parsed iterator is reused
            self._cron_iter = croniter(self.cron, ts)
        else:
            self._cron_iter.set_current(ts, force=True)
        return float(self._cron_iter.get_next(float))

    def start(self, now: float) -> None:
        """First observation: an interval schedule buys now, a cron one at its next time."""
        if self.next_due_ts is None:
            self.next_due_ts = now if self.cron is None else self._cron_after(now)

    def multiplier(
        self,
        price: float,
        recent_high: float,
        sentiment: float,
        up_probability: float | None = None,
    ) -> Fraction:
        """Exact multiplier of the base amount: dip, fear and ML weights, capped."""
        multiplier = Fraction(1)
        if self.ml_weight > 0 and up_probability is not None:
            # rounded to 6 decimals so the fraction (and the amount) stays readable and exact
            weight = max(0.0, 1.0 + self.ml_weight * (2.0 * up_probability - 1.0))
            multiplier *= Fraction(f"{weight:.6f}")
        # price at least dip_threshold_pct below the high, without dividing (exact at the edge)
        if recent_high > 0 and price * 100 <= recent_high * (100 - self.dip_threshold_pct):
            multiplier *= self.dip_multiplier
        if sentiment <= self.fear_threshold:
            multiplier *= self.fear_multiplier
        return min(multiplier, self.max_multiplier)

    def decide(
        self,
        now: float,
        price: float,
        recent_high: float,
        sentiment: float = 0.0,
        up_probability: float | None = None,
    ) -> DcaOrder | None:
        """A buy when the schedule is due at ``now`` (unix s), else None.

        ``price`` and ``recent_high`` are buy-token prices in spend tokens (any one unit);
        ``sentiment`` in [-1, 1] (pass 0.0 when stale); ``up_probability`` the ML signal's
        (None: no signal). A slot weighted down to nothing is skipped. A decided buy advances
        the schedule: slots missed while the agent was down are skipped, not bought in a burst.
        """
        if self.next_due_ts is None:
            self.start(now)
        assert self.next_due_ts is not None
        if now < self.next_due_ts:
            return None
        multiplier = self.multiplier(price, recent_high, sentiment, up_probability)
        amount = self.base_amount * multiplier.numerator // multiplier.denominator
        if self.interval_s is not None:
            missed = math.floor((now - self.next_due_ts) / self.interval_s)
            self.next_due_ts += (missed + 1) * self.interval_s
        else:
            self.next_due_ts = self._cron_after(now)
        if amount <= 0:
            return None
        self.last_buy_ts = now
        self.buys += 1
        drawdown = (1 - price / recent_high) * 100 if recent_high > 0 else 0.0
        return DcaOrder(
            id=f"dca-{self.buys}",
            ts=now,
            amount_in=amount,
            multiplier=float(multiplier),
            drawdown_pct=max(0.0, drawdown),
            sentiment=sentiment,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "next_due_ts": self.next_due_ts,
            "last_buy_ts": self.last_buy_ts,
            "buys": self.buys,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown DCA state version {state.get('version')!r}")
        next_due = state.get("next_due_ts")
        last_buy = state.get("last_buy_ts")
        self.next_due_ts = None if next_due is None else float(next_due)
        self.last_buy_ts = None if last_buy is None else float(last_buy)
        self.buys = int(state.get("buys", 0))


class RecentHigh:
    """Highest price seen in the last ``lookback_s`` seconds, kept as per-bucket maxima.

    Buckets of ``lookback_s / 256`` keep memory and the persisted state small whatever the block
    rate; the high is then exact up to one bucket's age at the window's edge.
    """

    def __init__(self, lookback_s: float, buckets: int = 256) -> None:
        self.lookback_s = lookback_s
        self.bucket_s = lookback_s / buckets
        self._maxima: deque[tuple[float, float]] = deque()  # (bucket start, max price)

    def observe(self, ts: float, price: float) -> None:
        start = math.floor(ts / self.bucket_s) * self.bucket_s
        if self._maxima and self._maxima[-1][0] == start:
            if price > self._maxima[-1][1]:
                self._maxima[-1] = (start, price)
        else:
            self._maxima.append((start, price))
        while self._maxima and self._maxima[0][0] + self.bucket_s <= ts - self.lookback_s:
            self._maxima.popleft()

    def high(self) -> float:
        return max((price for _, price in self._maxima), default=0.0)

    def to_state(self) -> list[list[float]]:
        return [[start, price] for start, price in self._maxima]

    def restore(self, state: list[list[float]]) -> None:
        self._maxima = deque((float(start), float(price)) for start, price in state)


class DcaStrategy(BaseStrategy[DcaParams]):
    """Live DCA: the ``DcaSchedule`` on the pair's pool price; best of direct pools and 1inch."""

    name: ClassVar[str] = "dca"
    Params: ClassVar[type[StrategyParams]] = DcaParams

    def __init__(self, params: DcaParams) -> None:
        super().__init__(params)
        self.schedule: DcaSchedule | None = None
        self.recent_high = RecentHigh(params.dip_lookback_s)
        self._saved: dict[str, Any] | None = None
        # the ML signal's live feed: pool prices closed into ml_candle_s candles (not persisted:
        # after a restart the model warms up again on new candles)
        self.signal: Any = None  # agent.research.signal.OnlineDirectionSignal, built on demand
        self.up_probability: float | None = None
        self._candle_bucket: int | None = None
        self._candle_close = 0.0

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Keep the saved schedule; it is rebuilt when the first snapshot tells the decimals."""
        self.schedule = None
        self._saved = dict(state) if state else None
        if self._saved and "recent_high" in self._saved:
            self.recent_high.restore(self._saved["recent_high"])

    def state(self) -> dict[str, Any]:
        """The schedule and the recent-high buckets, JSON-serialisable."""
        if self.schedule is None:
            return dict(self._saved) if self._saved else {}
        return {"schedule": self.schedule.to_state(), "recent_high": self.recent_high.to_state()}

    def _ensure_schedule(self, spend_decimals: int) -> DcaSchedule:
        if self.schedule is None:
            schedule = DcaSchedule.from_params(self.params, spend_decimals)
            if self._saved and "schedule" in self._saved:
                schedule.restore(self._saved["schedule"])
            self.schedule = schedule
            self._saved = None
        return self.schedule

    def observe_candle(self, close: float, volume: float, sentiment: float) -> float | None:
        """Feed one closed candle to the ML signal; its up-probability (None: no model yet)."""
        if self.signal is None:
            # imported here: scikit-learn only loads when the signal is switched on
            from agent.research.signal import OnlineDirectionSignal, SignalConfig

            self.signal = OnlineDirectionSignal(
                SignalConfig(
                    retrain_every=self.params.ml_retrain_every,
                    train_window=self.params.ml_train_window,
                )
            )
        probability: float | None = self.signal.update(close, volume, sentiment)
        self.up_probability = probability
        return probability

    def _observe_price(self, now: float, price: float, sentiment: float) -> None:
        """Close a candle when ``now`` enters a new ``ml_candle_s`` bucket. Pool snapshots carry
        no traded volume, so live candles have volume 0 (the volume z-score reads 0)."""
        bucket = math.floor(now / self.params.ml_candle_s)
        if self._candle_bucket is not None and bucket != self._candle_bucket:
            self.observe_candle(self._candle_close, 0.0, sentiment)
        self._candle_bucket = bucket
        self._candle_close = price

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """One buy when the schedule is due, through whichever route pays out more."""
        params = self.params
        buy = resolve_token(snapshot, params.buy_token)
        spend = resolve_token(snapshot, params.spend_token)
        if buy is None or spend is None:
            return []
        pools = pools_for_pair(snapshot, spend.address, buy.address)
        prices = [p for p in (mid_price(pool, buy, spend) for _, pool in pools) if p > 0]
        now = snapshot.timestamp
        if prices:
            self.recent_high.observe(now, median(prices))
        elif params.route == "pools":
            return []
        schedule = self._ensure_schedule(spend.decimals)
        price = median(prices) if prices else 0.0
        sentiment = snapshot.sentiment_or_neutral(buy.address)
        if price > 0 and params.ml_weight > 0:
            self._observe_price(now, price, sentiment)
        if price <= 0:
            # without a pool price the dip cannot be measured: buy the plain amount
            order = schedule.decide(now, 1.0, 0.0, sentiment)
        else:
            order = schedule.decide(
                now, price, self.recent_high.high(), sentiment, self.up_probability
            )
        if order is None:
            return []
        amount_in = order.amount_in
        if portfolio.balances.get(spend.address, 0) < amount_in:
            # a slot without the funds is skipped (the schedule already moved on)
            return []
        best_out = 0
        route: tuple[RouteHop, ...] = ()
        impact = 0.0
        if params.route in ("auto", "pools"):
            swap = best_exact_input(pools, spend.address, amount_in)
            if swap is not None:
                best_out = swap.amount_out
                route = (hop_for(snapshot, swap),)
                impact = price_impact_bps(swap.pool, spend, buy, swap)
        if params.route in ("auto", "oneinch") and snapshot.aggregator_executable:
            aggregated = _aggregator_output(snapshot, spend.address, buy.address, amount_in, now)
            if aggregated > best_out:
                best_out = aggregated
                route = (
                    RouteHop(
                        pool="",
                        dex=ONEINCH_DEX,
                        kind="aggregator",
                        token_in=spend.address,
                        token_out=buy.address,
                        fee_pips=0,
                    ),
                )
                impact = 0.0
        if best_out <= 0:
            return []
        return [
            swap_opportunity(
                snapshot,
                strategy=self.name,
                opportunity_id=f"{order.id}-{int(order.ts)}",
                route=route,
                token_in=spend,
                token_out=buy,
                amount_in=amount_in,
                predicted_amount_out=best_out,
                gas_estimate=params.gas_estimate,
                impact_bps=impact,
                note=(
                    f"dca x{order.multiplier:g} (drawdown {order.drawdown_pct:.1f}%, "
                    f"sentiment {order.sentiment:+.2f}) via {route[0].dex}"
                ),
            )
        ]


def _aggregator_output(
    snapshot: MarketSnapshot, token_in: str, token_out: str, amount_in: int, now: float
) -> int:
    """1inch's output for ``amount_in``, from a fresh quote; 0 when there is none usable.

    A quote for a larger input is scaled down proportionally: output is concave in input, so
    the scaled figure is a lower bound of what the smaller swap returns. A quote for a smaller
    input would overstate it and is not used.
    """
    reading = snapshot.aggregator.get((token_in, token_out))
    if reading is None or reading.value is None or reading.is_stale(now):
        return 0
    quote = reading.value
    if quote.amount_in <= 0 or quote.amount_in < amount_in:
        return 0
    return quote.amount_out * amount_in // quote.amount_in
