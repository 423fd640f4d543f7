"""Whale-follow: copy watched wallets' buys at a fraction of their size, then exit on our terms.

Each ``WhaleTrade`` in the snapshot is a swap ``token_in -> token_out`` by a watched wallet; we
follow it as a buy of ``token_out`` paid with ``token_in`` when it is recent enough (at most
``max_delay_blocks`` old), big enough (``min_whale_trade_usd``), into an allowed token, and the
token's sentiment is not below ``min_sentiment`` (stale sentiment counts as neutral). Positions
we opened are tracked in the persisted state and closed back into the token we paid with on
take-profit, stop-loss or a time limit (blocks and/or seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import Fill, NotFilled, Opportunity, Token, WhaleTrade
from strategies._directional import (
    BPS,
    DEFAULT_SWAP_GAS,
    best_exact_input,
    checksum_address,
    match_pending,
    pool_swap_opportunity,
    pools_for_pair,
    proposal_of,
    resolve_token,
    token_ref,
)
from strategies.base import BaseStrategy, StrategyParams

STATE_VERSION = 1
SEEN_TRADES_KEPT = 1_000


class WhaleFollowParams(StrategyParams):
    """``[strategies.whale_follow]``. USD figures are valuations; amounts stay exact ints.

    ``size_fraction`` of the whale's input, capped at ``max_trade_usd`` and by our balance.
    ``wallets`` empty follows every wallet the whale feed watches; ``token_allowlist`` empty
    follows into any token (the risk gate's allowlist still applies). Exits: ``take_profit_pct``
    and ``stop_loss_pct`` on the exact value of the position back in the token paid, and
    ``max_hold_blocks`` / ``max_hold_s`` (either reached closes the position). Buys are
    followed only when the bought token's sentiment is at least ``min_sentiment`` (with
    ``sentiment_gate`` on; stale sentiment counts as neutral 0.0).
    """

    enabled: bool = False
    wallets: list[str] = Field(default_factory=list)
    size_fraction: float = Field(0.05, gt=0, le=1)
    max_trade_usd: float = Field(1_000.0, gt=0)
    min_whale_trade_usd: float = Field(50_000.0, ge=0)
    max_delay_blocks: int = Field(2, ge=0, le=100)
    token_allowlist: list[str] = Field(default_factory=list)
    sentiment_gate: bool = True
    min_sentiment: float | None = Field(-0.2, ge=-1, le=1)
    take_profit_pct: float = Field(5.0, gt=0)
    stop_loss_pct: float = Field(3.0, gt=0, lt=100)
    max_hold_blocks: int | None = Field(None, gt=0)
    max_hold_s: float | None = Field(86_400.0, gt=0)
    pending_ttl_blocks: int = Field(25, ge=1, le=10_000)
    gas_estimate: int = Field(DEFAULT_SWAP_GAS, gt=0)

    @field_validator("wallets")
    @classmethod
    def _wallets(cls, wallets: list[str]) -> list[str]:
        return [checksum_address(wallet) for wallet in wallets]

    @field_validator("token_allowlist")
    @classmethod
    def _tokens(cls, tokens: list[str]) -> list[str]:
        return [token_ref(token) for token in tokens]

    @model_validator(mode="after")
    def _some_time_limit(self) -> WhaleFollowParams:
        if self.max_hold_blocks is None and self.max_hold_s is None:
            raise ValueError("set max_hold_blocks or max_hold_s (a position needs a time limit)")
        return self


@dataclass(frozen=True, slots=True)
class Position:
    """Tokens we hold from following a whale. Amounts in smallest units.

    ``amount`` of ``token`` was bought for ``cost`` of ``paid_with`` at ``entry_block`` /
    ``entry_ts``; it is sold back into ``paid_with``.
    """

    id: str
    token: str
    paid_with: str
    amount: int
    cost: int
    entry_block: int
    entry_ts: float
    whale_tx: str


@dataclass(frozen=True, slots=True)
class PendingSwap:
    """A follow (entry) or an exit we proposed and whose fill has not arrived yet."""

    id: str
    kind: str  # "entry" | "exit"
    token_in: str
    token_out: str
    amount_in: int
    block: int
    ts: float
    position_id: str = ""
    whale_tx: str = ""


def _with_str_amounts(record: Any, *names: str) -> dict[str, Any]:
    raw = asdict(record)
    for name in names:
        raw[name] = str(raw[name])
    return raw


def _position_state(position: Position) -> dict[str, Any]:
    return _with_str_amounts(position, "amount", "cost")


class WhaleFollowStrategy(BaseStrategy[WhaleFollowParams]):
    """Follows ``snapshot.whale_trades``; exits its own positions."""

    name: ClassVar[str] = "whale_follow"
    Params: ClassVar[type[StrategyParams]] = WhaleFollowParams

    def __init__(self, params: WhaleFollowParams) -> None:
        super().__init__(params)
        self.positions: dict[str, Position] = {}
        self.pending: dict[str, PendingSwap] = {}
        self.seen: list[str] = []  # followed-or-rejected whale trade keys, oldest first
        self.realized: list[dict[str, Any]] = []  # closed positions, newest last (bounded)
        self.seq = 0
        self._wallets = {w.lower() for w in params.wallets}

    # --- persistence --------------------------------------------------------------------

    def on_start(self, state: Mapping[str, Any] | None) -> None:
        """Restore positions, pending swaps and seen whale trades saved by ``state()``."""
        self.positions, self.pending, self.seen, self.seq = {}, {}, [], 0
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown whale_follow state version {state.get('version')!r}")
        for raw in state.get("positions", []):
            position = Position(**{**raw, "amount": int(raw["amount"]), "cost": int(raw["cost"])})
            self.positions[position.id] = position
        for raw in state.get("pending", []):
            pending = PendingSwap(**{**raw, "amount_in": int(raw["amount_in"])})
            self.pending[pending.id] = pending
        self.seen = [str(key) for key in state.get("seen", [])]
        self.realized = list(state.get("realized", []))
        self.seq = int(state.get("seq", 0))

    def state(self) -> dict[str, Any]:
        """Positions, pending swaps, seen whale trades and recent exits, JSON-serialisable."""

        return {
            "version": STATE_VERSION,
            "positions": [_position_state(p) for p in self.positions.values()],
            "pending": [_with_str_amounts(p, "amount_in") for p in self.pending.values()],
            "seen": list(self.seen),
            "realized": list(self.realized[-100:]),
            "seq": self.seq,
        }

    # --- fills --------------------------------------------------------------------------

    def on_fill(self, fill: Fill | NotFilled) -> None:
        """Record an entry as a position, or close the position an exit sold."""
        pending_id = match_pending(self.pending, fill)
        if pending_id is None:
            return
        pending = self.pending.pop(pending_id)
        if isinstance(fill, NotFilled) or fill.amount_out <= 0:
            return  # did not fill: an entry is dropped, an exit is retried on a later tick
        if pending.kind == "entry":
            self.positions[pending.id] = Position(
                id=pending.id,
                token=pending.token_out,
                paid_with=pending.token_in,
                amount=fill.amount_out,
                cost=fill.amount_in,
                entry_block=fill.block_number if fill.block_number is not None else pending.block,
                entry_ts=pending.ts,
                whale_tx=pending.whale_tx,
            )
        else:
            position = self.positions.pop(pending.position_id, None)
            if position is not None:
                self.realized.append(
                    {
                        "exit_id": pending.id,
                        "position": _position_state(position),
                        "id": position.id,
                        "token": position.token,
                        "paid_with": position.paid_with,
                        "cost": str(position.cost),
                        "proceeds": str(fill.amount_out),
                        "profit": str(fill.amount_out - position.cost),
                    }
                )
                self.realized = self.realized[-100:]

    def on_fill_changed(self, before: Fill, after: Fill | None) -> None:
        """A reorg voided an entry (its position is forgotten) or an exit (its position is
        held again), or moved one (the position's amounts, or the exit's proceeds, follow)."""
        entry_id = proposal_of(before, self.positions)
        if entry_id is not None:
            if after is None:
                del self.positions[entry_id]
            else:
                position = self.positions[entry_id]
                self.positions[entry_id] = replace(
                    position, amount=after.amount_out, cost=after.amount_in
                )
            return
        exits = {str(r.get("exit_id")): r for r in self.realized if "exit_id" in r}
        exit_id = proposal_of(before, exits)
        if exit_id is None:
            return
        record = exits[exit_id]
        if after is None:
            self.realized.remove(record)
            raw = record["position"]
            position = Position(**{**raw, "amount": int(raw["amount"]), "cost": int(raw["cost"])})
            self.positions[position.id] = position
        else:
            record["proceeds"] = str(after.amount_out)
            record["profit"] = str(after.amount_out - int(record["cost"]))

    # --- deciding -----------------------------------------------------------------------

    def evaluate(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        """Exits first (they free funds), then follows of fresh whale trades."""
        self._expire(snapshot.block)
        opportunities = self._exits(snapshot)
        opportunities.extend(self._entries(snapshot, portfolio))
        return opportunities

    def _expire(self, block: int) -> None:
        ttl = self.params.pending_ttl_blocks
        for pending_id, pending in list(self.pending.items()):
            if block - pending.block > ttl:
                del self.pending[pending_id]

    def _exits(self, snapshot: MarketSnapshot) -> list[Opportunity]:
        params = self.params
        exiting = {p.position_id for p in self.pending.values() if p.kind == "exit"}
        opportunities: list[Opportunity] = []
        for position in self.positions.values():
            if position.id in exiting:
                continue
            token = resolve_token(snapshot, position.token)
            paid_with = resolve_token(snapshot, position.paid_with)
            if token is None or paid_with is None:
                continue
            pools = pools_for_pair(snapshot, token.address, paid_with.address)
            swap = best_exact_input(pools, token.address, position.amount)
            if swap is None:
                continue
            # exact value of the position now vs what it cost, both in the token paid
            change_bps = (swap.amount_out - position.cost) * BPS // position.cost
            reason = ""
            if change_bps >= params.take_profit_pct * 100:
                reason = "take profit"
            elif change_bps <= -params.stop_loss_pct * 100:
                reason = "stop loss"
            elif (
                params.max_hold_blocks is not None
                and snapshot.block - position.entry_block >= params.max_hold_blocks
            ):
                reason = "time limit (blocks)"
            elif (
                params.max_hold_s is not None
                and snapshot.timestamp - position.entry_ts >= params.max_hold_s
            ):
                reason = "time limit (seconds)"
            if not reason:
                continue
            exit_id = f"whale-exit-{position.id}"
            self.pending[exit_id] = PendingSwap(
                id=exit_id,
                kind="exit",
                token_in=token.address,
                token_out=paid_with.address,
                amount_in=position.amount,
                block=snapshot.block,
                ts=snapshot.timestamp,
                position_id=position.id,
            )
            gross = snapshot.value_usd(paid_with.address, swap.amount_out - position.cost)
            opportunities.append(
                pool_swap_opportunity(
                    snapshot,
                    swap,
                    strategy=self.name,
                    opportunity_id=exit_id,
                    token_in=token,
                    token_out=paid_with,
                    gas_estimate=params.gas_estimate,
                    gross_profit_usd=gross,
                    note=f"whale-follow exit: {reason} ({change_bps / 100:+.2f}%)",
                )
            )
        return opportunities

    def _entries(self, snapshot: MarketSnapshot, portfolio: PortfolioView) -> list[Opportunity]:
        params = self.params
        opportunities: list[Opportunity] = []
        balances = dict(portfolio.balances)
        for trade in snapshot.whale_trades:
            key = f"{trade.tx_hash}:{trade.wallet.lower()}:{trade.token_out.lower()}"
            if key in self.seen:
                continue
            if self._wallets and trade.wallet.lower() not in self._wallets:
                continue
            # decided once: followed or skipped, a trade is not reconsidered on later ticks
            self._remember(key)
            if trade.block < snapshot.block - params.max_delay_blocks:
                continue  # older than the delay allows
            sized = self._follow_size(snapshot, trade, balances)
            if sized is None:
                continue
            token_in, token_out, amount_in = sized
            pools = pools_for_pair(snapshot, token_in.address, token_out.address)
            swap = best_exact_input(pools, token_in.address, amount_in)
            if swap is None:
                continue
            self.seq += 1
            entry_id = f"whale-{self.seq}-{trade.tx_hash[:12]}"
            self.pending[entry_id] = PendingSwap(
                id=entry_id,
                kind="entry",
                token_in=token_in.address,
                token_out=token_out.address,
                amount_in=amount_in,
                block=snapshot.block,
                ts=snapshot.timestamp,
                whale_tx=trade.tx_hash,
            )
            balances[token_in.address] = balances.get(token_in.address, 0) - amount_in
            opportunities.append(
                pool_swap_opportunity(
                    snapshot,
                    swap,
                    strategy=self.name,
                    opportunity_id=entry_id,
                    token_in=token_in,
                    token_out=token_out,
                    gas_estimate=params.gas_estimate,
                    note=(
                        f"follow {trade.wallet[:10]} {token_in.symbol}->{token_out.symbol} "
                        f"({snapshot.block - trade.block} blocks late)"
                    ),
                )
            )
        return opportunities

    def _follow_size(
        self, snapshot: MarketSnapshot, trade: WhaleTrade, balances: Mapping[str, int]
    ) -> tuple[Token, Token, int] | None:
        """``(token_in, token_out, amount_in)`` to follow ``trade`` with, or None to skip it."""
        params = self.params
        token_in = resolve_token(snapshot, trade.token_in)
        token_out = resolve_token(snapshot, trade.token_out)
        if token_in is None or token_out is None:
            return None
        if params.token_allowlist and not _listed(token_out, params.token_allowlist):
            return None
        whale_usd = snapshot.value_usd(token_in.address, trade.amount_in) or snapshot.value_usd(
            token_out.address, trade.amount_out
        )
        if whale_usd < params.min_whale_trade_usd or whale_usd <= 0:
            return None
        if params.sentiment_gate and params.min_sentiment is not None:
            score = snapshot.sentiment_or_neutral(token_out.address)
            if score < params.min_sentiment:
                return None
        # exact int scaling: the fraction as a ratio of ints, the USD cap as a share of the
        # whale's input
        fraction_ppm = round(params.size_fraction * 1_000_000)
        amount_in = trade.amount_in * fraction_ppm // 1_000_000
        cap_ppm = int(params.max_trade_usd / whale_usd * 1_000_000)
        amount_in = min(amount_in, trade.amount_in * cap_ppm // 1_000_000)
        amount_in = min(amount_in, balances.get(token_in.address, 0))
        if amount_in <= 0:
            return None
        return token_in, token_out, amount_in

    def _remember(self, key: str) -> None:
        self.seen.append(key)
        if len(self.seen) > SEEN_TRADES_KEPT:
            del self.seen[: len(self.seen) - SEEN_TRADES_KEPT]


def _listed(token: Token, allowlist: list[str]) -> bool:
    wanted = {ref.lower() for ref in allowlist}
    return token.address.lower() in wanted or token.symbol.lower() in wanted
