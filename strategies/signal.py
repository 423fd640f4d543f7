"""Signal: trade on external signals (TradingView alerts, a generic signed JSON webhook).

The console's webhook endpoint authenticates a signal and hands it to ``enqueue``; at the next
snapshot ``evaluate`` turns every queued signal into one directional swap ``Opportunity``, sized
in exact integer units from the snapshot's pools and prices, or drops it with a reason (kept in
``state()["outcomes"]`` for the console). The engine then computes the minimum out and the
deadline and puts the swap through the same risk gate as every other strategy's.

A signal buys or sells ``token`` against ``quote`` (the webhook's choice, else
``[strategies.signal].quote``) for ``amount`` whole tokens of ``token`` or for ``amount_usd``:
a buy of ``amount`` tokens is an exact-output swap, everything else an exact-input swap.
A signal is one-shot: it is decided at the first snapshot after it arrived, never retried.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Fill, NotFilled, Opportunity, Token
from strategies._directional import (
    DEFAULT_SWAP_GAS,
    ExactSwap,
    best_exact_input,
    best_exact_output,
    hop_for,
    match_pending,
    pools_for_pair,
    price_impact_bps,
    proposal_of,
    resolve_token,
    swap_opportunity,
    token_ref,
)
from strategies.base import BaseStrategy, StrategyParams

STATE_VERSION = 1
OUTCOMES_KEPT = 100

SignalAction = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class TradingSignal:
    """One authenticated signal. Exactly one of ``amount`` (whole tokens of ``token``, a
    decimal string) and ``amount_usd`` is set. ``max_notional_usd`` is the webhook's cap;
    ``received_at`` is unix seconds (for the record, never compared with block time)."""

    webhook: str
    nonce: str
    action: SignalAction
    token: str
    quote: str | None
    amount: str | None
    amount_usd: float | None
    max_notional_usd: float
    received_at: float


@dataclass(frozen=True, slots=True)
class PendingSignalSwap:
    """A swap we proposed for a signal and whose fill has not arrived yet."""

    id: str
    token_in: str
    token_out: str
    amount_in: int
    block: int


class SignalParams(StrategyParams):
    """``[strategies.signal]``: trades the signals of the ``[webhooks.<name>]`` endpoints.

    ``quote`` is the token paid on a buy and received on a sell when the signal names none.
    At most ``max_queued`` signals wait for the next snapshot (more are refused at the door).
    """

    enabled: bool = False
    quote: str = "USDC"
    max_queued: int = Field(100, ge=1, le=10_000)
    pending_ttl_blocks: int = Field(25, ge=1, le=10_000)
    gas_estimate: int = Field(DEFAULT_SWAP_GAS, gt=0)

    @field_validator("quote")
    @classmethod
    def _quote(cls, value: str) -> str:
        return token_ref(value)


class SignalStrategy(BaseStrategy[SignalParams]):
    """Queued external signals in, directional swaps out."""

    name: ClassVar[str] = "signal"
    Params: ClassVar[type[StrategyParams]] = SignalParams

    def __init__(self, params: SignalParams) -> None:
        super().__init__(params)
        # The one cross-thread hand-over: the console's loop appends while ``evaluate`` (in a
        # worker thread) pops; deque append/popleft are atomic, so no lock is needed.
        self._queue: collections.deque[TradingSignal] = collections.deque()
        self.pending: dict[str, PendingSignalSwap] = {}
        self.outcomes: list[dict[str, Any]] = []  # newest last, bounded
        self.seq = 0

    # --- the webhook side -----------------------------------------------------------------

    def enqueue(self, signal: TradingSignal) -> bool:
        """Queue ``signal`` for the next snapshot; False when the queue is full."""
        if len(self._queue) >= self.params.max_queued:
            return False
        self._queue.append(signal)
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- persistence --------------------------------------------------------------------

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Restore queued signals, pending swaps and recent outcomes saved by ``state()``."""
        self._queue.clear()
        self.pending, self.outcomes, self.seq = {}, [], 0
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown signal state version {state.get('version')!r}")
        for raw in state.get("queued", []):
            self._queue.append(TradingSignal(**raw))
        for raw in state.get("pending", []):
            pending = PendingSignalSwap(**{**raw, "amount_in": int(raw["amount_in"])})
            self.pending[pending.id] = pending
        self.outcomes = list(state.get("outcomes", []))[-OUTCOMES_KEPT:]
        self.seq = int(state.get("seq", 0))

    def state(self) -> dict[str, Any]:
        pending = [{**asdict(p), "amount_in": str(p.amount_in)} for p in self.pending.values()]
        return {
            "version": STATE_VERSION,
            "queued": [asdict(signal) for signal in list(self._queue)],
            "pending": pending,
            "outcomes": list(self.outcomes),
            "seq": self.seq,
        }

    # --- fills --------------------------------------------------------------------------

    def on_fill(self, fill: Fill | NotFilled) -> None:
        pending_id = match_pending(self.pending, fill)
        if pending_id is None:
            return
        del self.pending[pending_id]
        for outcome in reversed(self.outcomes):
            if outcome["id"] == pending_id:
                if isinstance(fill, Fill) and fill.amount_out > 0:
                    outcome["status"] = "filled"
                    outcome["amount_in"] = str(fill.amount_in)
                    outcome["amount_out"] = str(fill.amount_out)
                elif isinstance(fill, NotFilled):
                    outcome["status"] = "not filled"
                    outcome["reason"] = fill.reason
                break

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        """A reorg voided a signal's fill (its outcome says so; the signal is not traded
        again) or moved it (the outcome shows the new amounts)."""
        filled = {str(o["id"]): o for o in self.outcomes if o.get("status") == "filled"}
        signal_id = proposal_of(before, filled)
        if signal_id is None:
            return
        outcome = filled[signal_id]
        if after is None:
            outcome["status"] = "reorged out"
            outcome["reason"] = f"block {before.block_number} was replaced: nothing traded"
        else:
            outcome["amount_in"] = str(after.amount_in)
            outcome["amount_out"] = str(after.amount_out)

    # --- deciding -----------------------------------------------------------------------

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """One swap per queued signal (in arrival order), or the reason it is dropped."""
        for pending_id, pending in list(self.pending.items()):
            if snapshot.block - pending.block > self.params.pending_ttl_blocks:
                del self.pending[pending_id]
        balances = dict(portfolio.balances)
        opportunities: list[Opportunity] = []
        while self._queue:
            signal = self._queue.popleft()
            self.seq += 1
            # the nonce's digest keeps ids unique even if the saved seq was lost (a crash)
            digest = hashlib.sha256(signal.nonce.encode()).hexdigest()[:8]
            signal_id = f"signal-{self.seq}-{signal.webhook}-{digest}"
            sized = self._size(snapshot, signal, balances)
            if isinstance(sized, str):
                self._record(signal_id, signal, snapshot.block, "dropped", sized)
                continue
            token_in, token_out, swap = sized
            balances[token_in.address] = balances.get(token_in.address, 0) - swap.amount_in
            self.pending[signal_id] = PendingSignalSwap(
                id=signal_id,
                token_in=token_in.address,
                token_out=token_out.address,
                amount_in=swap.amount_in,
                block=snapshot.block,
            )
            self._record(signal_id, signal, snapshot.block, "proposed", "")
            amount = signal.amount if signal.amount is not None else f"${signal.amount_usd:,.2f}"
            opportunities.append(
                swap_opportunity(
                    snapshot,
                    strategy=self.name,
                    opportunity_id=signal_id,
                    route=(hop_for(snapshot, swap),),
                    token_in=token_in,
                    token_out=token_out,
                    amount_in=swap.amount_in,
                    predicted_amount_out=swap.amount_out,
                    gas_estimate=self.params.gas_estimate,
                    impact_bps=price_impact_bps(swap.pool, token_in, token_out, swap),
                    note=f"webhook {signal.webhook}: {signal.action} {amount} {signal.token}",
                )
            )
        return opportunities

    def _size(
        self, snapshot: MarketSnapshot, signal: TradingSignal, balances: Mapping[str, int]
    ) -> tuple[Token, Token, ExactSwap] | str:
        """``(token_in, token_out, swap)`` for ``signal``, or why it cannot be traded."""
        token = resolve_token(snapshot, signal.token)
        quote = resolve_token(snapshot, signal.quote or self.params.quote)
        if token is None:
            return f"unknown token {signal.token}"
        if quote is None:
            return f"unknown quote token {signal.quote or self.params.quote}"
        if token.address == quote.address:
            return f"{token.symbol} cannot be traded against itself"
        token_in, token_out = (quote, token) if signal.action == "buy" else (token, quote)
        pools = pools_for_pair(snapshot, token_in.address, token_out.address)
        if not pools:
            return f"no fresh pool for {token_in.symbol}/{token_out.symbol}"
        swap: ExactSwap | None
        if signal.amount is not None:
            try:
                units = token.to_units(signal.amount)
            except (InvalidOperation, ValueError):
                return f"amount {signal.amount!r} is not a number"
            if units <= 0:
                return "amount rounds to zero units"
            if signal.action == "buy":
                swap = best_exact_output(pools, token.address, units)
            else:
                swap = best_exact_input(pools, token.address, units)
        elif signal.amount_usd is not None:
            price = snapshot.prices_usd.get(token_in.address)
            if price is None or price <= 0:
                return f"no USD price for {token_in.symbol}"
            # floor to whole smallest units: never spend more than the USD asked for
            whole = Decimal(str(signal.amount_usd)) / Decimal(repr(price))
            units = int(whole * (Decimal(10) ** token_in.decimals))
            if units <= 0:
                return "amount_usd rounds to zero units"
            swap = best_exact_input(pools, token_in.address, units)
        else:
            return "the signal names no amount"
        if swap is None:
            return f"no pool can fill {signal.action} {token.symbol}"
        notional_usd = snapshot.value_usd(token_in.address, swap.amount_in)
        if notional_usd > signal.max_notional_usd:
            return (
                f"notional ${notional_usd:,.2f} is over the webhook's max_notional_usd "
                f"(${signal.max_notional_usd:,.2f})"
            )
        held = balances.get(token_in.address, 0)
        if held < swap.amount_in:
            return (
                f"insufficient {token_in.symbol}: {token_in.from_units(held):g} held, "
                f"{token_in.from_units(swap.amount_in):g} needed"
            )
        return token_in, token_out, swap

    def _record(
        self, signal_id: str, signal: TradingSignal, block: int, status: str, reason: str
    ) -> None:
        self.outcomes.append(
            {
                "id": signal_id,
                "webhook": signal.webhook,
                "action": signal.action,
                "token": signal.token,
                "amount": signal.amount,
                "amount_usd": signal.amount_usd,
                "block": block,
                "status": status,
                "reason": reason,
            }
        )
        del self.outcomes[:-OUTCOMES_KEPT]
