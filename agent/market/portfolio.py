"""Our holdings: balances per token, equity in USD, its peak, drawdown and realised PnL today.

The portfolio does no I/O. The engine feeds it:

* ``mark(snapshot)`` every tick: revalue at the snapshot's USD prices and raise the peak;
* for every settled trade, paper mode: ``apply_fill(fill)`` books realised PnL and moves the
  in-memory balances by the realised amounts (as ``Journal.record_fill(fill,
  move_paper_balances=True)`` does for the paper portfolio in the DB) and charges gas to the
  native balance; live/fork mode: ``book_fill(fill)`` books the PnL only, since balances there
  come from the chain; a fill pending confirmation that a reorg voids or moves is taken back
  out with ``unbook_fill`` (and booked again when moved), one that became final is forgotten
  with ``confirm_fill``;
* ``refresh(balances)`` with balances the engine read: in live/fork mode from the chain every
  tick (one multicall of ``balanceOf``, plus ``eth_getBalance`` under :data:`NATIVE_TOKEN`);
  in paper mode once at start from ``Journal.paper_balances()``;
* ``state()`` / ``restore(state)`` so the peak, today's PnL and the cost basis survive a
  restart (saved with ``Journal.set_strategy_state(PORTFOLIO_STATE_KEY, ...)``); equity history
  goes to ``Journal.snapshot_equity(mode, view.equity_usd, view.balances, block)``.

Amounts are ``int`` in each token's smallest unit. USD figures are ``float`` and are used only
for valuation, limits and reporting, never for an amount that is sent.

Realised PnL uses average cost: selling a non-quote token realises proceeds minus its average
cost; any swap out of a quote token (stablecoin) realises the execution cost at once (value out
at market minus value in); an arbitrage cycle (``token_in == token_out``) realises its profit;
gas is always a realised loss. "Today" is the UTC calendar day of the injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.types import FILL_PENDING, Fill, Token

log = logging.getLogger(__name__)

# The chain's native coin (ETH on Ethereum) as a balance key: the EIP-7528 placeholder address
# that 1inch and most aggregators also use. Valued with ``MarketSnapshot.native_price_usd``.
NATIVE_TOKEN = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"
NATIVE_DECIMALS = 18

# Tokens whose holdings are cash, not exposure. Symbols or addresses, matched by either.
DEFAULT_QUOTE_TOKENS: frozenset[str] = frozenset({"USDC", "USDT", "DAI"})

# The journal's strategy-state key the engine saves ``Portfolio.state()`` under.
PORTFOLIO_STATE_KEY = "__portfolio__"


def token_matches(address: str, refs: frozenset[str], tokens: Mapping[str, Token]) -> bool:
    """Whether ``address`` is named in ``refs`` by address or by its symbol in ``tokens``.

    Config lists tokens by symbol ("WETH") or address; pools and fills speak addresses.
    """
    if address in refs:
        return True
    meta = tokens.get(address)
    return meta is not None and meta.symbol in refs


@dataclass(frozen=True, slots=True)
class FillBooking:
    """What one fill did to the books. USD at the prices of the last ``mark``."""

    realized_pnl_usd: float
    gas_cost_usd: float
    priced: bool  # False when a token of the fill had no price yet (PnL booked as 0 for it)


class Portfolio:
    """Balances, valuation, peak, drawdown and realised PnL. Pure in-memory state, no I/O.

    ``tokens`` maps checksummed address -> ``Token`` (decimals for valuation; more are learnt
    from each snapshot). ``quote_tokens`` are symbols or addresses of cash-like tokens, which
    carry no exposure. ``clock`` returns unix seconds (UTC day roll of today's PnL).
    """

    def __init__(
        self,
        tokens: Mapping[str, Token] | None = None,
        balances: Mapping[str, int] | None = None,
        *,
        quote_tokens: Iterable[str] = DEFAULT_QUOTE_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens: dict[str, Token] = dict(tokens or {})
        self._balances: dict[str, int] = {}
        self._quote_refs = frozenset(quote_tokens)
        self._clock = clock
        self._prices_usd: dict[str, float] = {}
        # USD per smallest unit, for non-quote tokens: the average cost of what we hold.
        self._avg_cost_usd: dict[str, float] = {}
        self._equity_usd = 0.0
        self._peak_equity_usd = 0.0
        self._marked = False
        self._realized_today_usd = 0.0
        self._pnl_day = self._today()
        # What today's fills still pending confirmation booked (intent id -> USD): a reorg
        # that voids or moves one takes its booking back out of today's PnL.
        self._unconfirmed_usd: dict[str, float] = {}
        # Until balances are known (fresh start without balances, or after ``restore``), the
        # first ``refresh`` only sets them: it is a reading, not a deposit.
        self._balances_known = balances is not None
        for token, amount in (balances or {}).items():
            self._balances[token] = _checked_amount(token, amount)

    # -- inputs --------------------------------------------------------------------------------

    def mark(self, snapshot: MarketSnapshot) -> PortfolioView:
        """Revalue every balance at ``snapshot`` prices (USD per whole token) and raise the peak.

        A token the snapshot does not price keeps its last known price: a feed gap must not
        look like a crash (that would fake a drawdown and halt trading).
        """
        for address, meta in snapshot.tokens.items():
            self._tokens.setdefault(address, meta)
        for address, price in snapshot.prices_usd.items():
            if price > 0:
                self._prices_usd[address] = price
        if snapshot.native_price_usd > 0:
            self._prices_usd[NATIVE_TOKEN] = snapshot.native_price_usd
        self._seed_cost_basis()
        self._revalue()
        return self.view()

    def apply_fill(self, fill: Fill) -> FillBooking:
        """Paper mode: book ``fill`` (see ``book_fill``) and move the balances by its realised
        amounts (smallest units), gas (``gas_cost_wei``) leaving the native balance."""
        booking = self.book_fill(fill)
        self._balances[fill.token_in] = self._balances.get(fill.token_in, 0) - fill.amount_in
        self._balances[fill.token_out] = self._balances.get(fill.token_out, 0) + fill.amount_out
        if fill.gas_cost_wei:
            # Paper mode has no real gas wallet: a negative native balance is gas spent beyond
            # what was funded, and it lowers equity exactly as real gas would.
            self._balances[NATIVE_TOKEN] = self._balances.get(NATIVE_TOKEN, 0) - fill.gas_cost_wei
        self._revalue()
        return booking

    def book_fill(self, fill: Fill) -> FillBooking:
        """Live/fork mode: book ``fill``'s realised PnL (USD, gas included) and cost basis
        without touching balances, which come only from ``refresh`` (before or after this
        call, either order gives the same books)."""
        self._roll_day()
        token_in, token_out = fill.token_in, fill.token_out
        gas_cost_usd = self._value(NATIVE_TOKEN, fill.gas_cost_wei) or 0.0
        value_out = self._value(token_out, fill.amount_out)
        if token_in == token_out:
            # An atomic cycle: the position is unchanged apart from the profit.
            realized = self._value(token_in, fill.amount_out - fill.amount_in)
        else:
            cost_in = self._cost_of(token_in, fill.amount_in)
            realized = None if cost_in is None or value_out is None else value_out - cost_in
            if value_out is not None and self._has_basis(token_out) and fill.amount_out > 0:
                self._average_in(token_out, fill.amount_out, value_out)
        if realized is None:
            log.warning("fill %s booked without a USD price for one of its tokens", fill.intent_id)
        booked = (realized or 0.0) - gas_cost_usd
        self._realized_today_usd += booked
        if fill.finality == FILL_PENDING:
            self._unconfirmed_usd[fill.intent_id] = booked
        return FillBooking(
            realized_pnl_usd=booked, gas_cost_usd=gas_cost_usd, priced=realized is not None
        )

    def unbook_fill(self, intent_id: str) -> float:
        """A reorg voided (or moved) the fill of ``intent_id`` while it was pending
        confirmation: what it booked today leaves today's PnL. Returns that USD amount (0 for
        a fill booked on an earlier day or never booked). Live/fork balances need no
        correction: the next ``refresh`` reads them from the chain as the reorg left it."""
        self._roll_day()
        booked = self._unconfirmed_usd.pop(intent_id, 0.0)
        self._realized_today_usd -= booked
        return booked

    def confirm_fill(self, intent_id: str) -> None:
        """The fill of ``intent_id`` is final: its booking stands for good."""
        self._unconfirmed_usd.pop(intent_id, None)

    def refresh(self, balances: Mapping[str, int]) -> None:
        """Replace balances with ones the engine read (smallest units; the native coin under
        ``NATIVE_TOKEN``). Tokens missing from ``balances`` keep their value.

        Increases not explained by a paper fill (deposits, or a live fill) are averaged into
        the cost basis at market price; decreases leave the average cost per unit unchanged.
        Neither is realised PnL: that is booked from fills only.
        """
        known, self._balances_known = self._balances_known, True
        for token, amount in balances.items():
            new_amount = _checked_amount(token, amount)
            old_amount = max(self._balances.get(token, 0), 0)
            if known and self._has_basis(token) and new_amount > old_amount:
                added = self._value(token, new_amount - old_amount)
                if added is not None:
                    self._average_in(token, new_amount - old_amount, added, held=old_amount)
            self._balances[token] = new_amount
        self._revalue()

    def reset_peak(self) -> None:
        """Start drawdown afresh from the current equity (after an operator resumes a halt)."""
        self._peak_equity_usd = self._equity_usd

    # -- outputs -------------------------------------------------------------------------------

    def view(self) -> PortfolioView:
        """An immutable picture for strategies and the risk gate (balances in smallest units)."""
        self._roll_day()
        return PortfolioView(
            balances=MappingProxyType(dict(self._balances)),
            equity_usd=self._equity_usd,
            peak_equity_usd=self._peak_equity_usd,
            realized_pnl_today_usd=self._realized_today_usd,
            exposure_usd=MappingProxyType(self.exposure_usd()),
        )

    def unit_prices_usd(self) -> dict[str, float]:
        """USD per smallest unit of every priced token: what the equity was valued at."""
        prices = {}
        for token, price in self._prices_usd.items():
            decimals = self._decimals(token)
            if decimals is not None:
                prices[token] = price / 10.0**decimals
        return prices

    def exposure_usd(self) -> dict[str, float]:
        """USD value of every positive non-quote holding (the native coin included)."""
        exposure: dict[str, float] = {}
        for token, amount in self._balances.items():
            if amount <= 0 or self._is_quote(token):
                continue
            value = self._value(token, amount)
            if value:
                exposure[token] = value
        return exposure

    @property
    def balances(self) -> Mapping[str, int]:
        """Current balances, smallest units (a read-only copy)."""
        return MappingProxyType(dict(self._balances))

    @property
    def equity_usd(self) -> float:
        return self._equity_usd

    @property
    def peak_equity_usd(self) -> float:
        return self._peak_equity_usd

    @property
    def drawdown_pct(self) -> float:
        """Percent below the peak equity (0 at or above the peak)."""
        if self._peak_equity_usd <= 0:
            return 0.0
        return max(0.0, (self._peak_equity_usd - self._equity_usd) / self._peak_equity_usd * 100)

    @property
    def realized_pnl_today_usd(self) -> float:
        self._roll_day()
        return self._realized_today_usd

    @property
    def unpriced_tokens(self) -> frozenset[str]:
        """Held tokens with no USD price yet (valued at 0 until one arrives)."""
        return frozenset(
            t for t, a in self._balances.items() if a != 0 and self._value(t, a) is None
        )

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-safe state (ints as decimal strings) for ``Journal.set_strategy_state``."""
        return {
            "peak_equity_usd": self._peak_equity_usd,
            "realized_pnl_today_usd": self._realized_today_usd,
            "pnl_day": self._pnl_day.isoformat(),
            "avg_cost_usd": dict(self._avg_cost_usd),
            "prices_usd": dict(self._prices_usd),
            "unconfirmed_usd": dict(self._unconfirmed_usd),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load what ``state()`` saved. Balances are not part of it: paper balances come from
        ``Journal.paper_balances()`` and live ones from the chain, both through ``refresh``.
        Today's PnL is kept only if it was saved today (UTC)."""
        self._peak_equity_usd = float(state.get("peak_equity_usd", 0.0))
        self._avg_cost_usd = {
            str(t): float(v) for t, v in dict(state.get("avg_cost_usd", {})).items()
        }
        for token, price in dict(state.get("prices_usd", {})).items():
            self._prices_usd.setdefault(str(token), float(price))
        saved_day = state.get("pnl_day")
        self._pnl_day = self._today()
        if saved_day == self._pnl_day.isoformat():
            self._realized_today_usd = float(state.get("realized_pnl_today_usd", 0.0))
            self._unconfirmed_usd = {
                str(i): float(v) for i, v in dict(state.get("unconfirmed_usd", {})).items()
            }
        else:
            self._realized_today_usd = 0.0
            self._unconfirmed_usd = {}
        self._marked = bool(self._prices_usd)
        self._balances_known = False
        self._revalue()

    # -- internals -----------------------------------------------------------------------------

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), tz=UTC).date()

    def _roll_day(self) -> None:
        today = self._today()
        if today != self._pnl_day:
            self._pnl_day = today
            self._realized_today_usd = 0.0
            self._unconfirmed_usd = {}  # a correction never rewrites a closed day

    def _is_quote(self, token: str) -> bool:
        return token != NATIVE_TOKEN and token_matches(token, self._quote_refs, self._tokens)

    def _decimals(self, token: str) -> int | None:
        if token == NATIVE_TOKEN:
            return NATIVE_DECIMALS
        meta = self._tokens.get(token)
        return None if meta is None else meta.decimals

    def _value(self, token: str, amount: int) -> float | None:
        """USD value of ``amount`` smallest units, or None when unpriced / unknown decimals."""
        price = self._prices_usd.get(token)
        decimals = self._decimals(token)
        if price is None or decimals is None:
            return None
        return amount / 10.0**decimals * price

    def _has_basis(self, token: str) -> bool:
        """Non-quote tokens carry an average cost; cash and the gas coin do not."""
        return token != NATIVE_TOKEN and not self._is_quote(token)

    def _cost_of(self, token: str, amount: int) -> float | None:
        """USD cost of ``amount`` leaving the portfolio: average cost for a position, market
        value for cash and the gas coin (and for a position whose cost is unknown)."""
        avg = self._avg_cost_usd.get(token) if self._has_basis(token) else None
        if avg is None:
            return self._value(token, amount)
        return amount * avg

    def _average_in(
        self, token: str, amount: int, value_usd: float, held: int | None = None
    ) -> None:
        """Blend ``amount`` bought for ``value_usd`` into ``token``'s average cost per unit."""
        held = max(self._balances.get(token, 0), 0) if held is None else held
        avg = self._avg_cost_usd.get(token)
        if avg is None or held <= 0:
            self._avg_cost_usd[token] = value_usd / amount
        else:
            self._avg_cost_usd[token] = (held * avg + value_usd) / (held + amount)

    def _seed_cost_basis(self) -> None:
        # Holdings we started with (or first saw) are carried at their first market price.
        for token, amount in self._balances.items():
            if amount <= 0 or token in self._avg_cost_usd or not self._has_basis(token):
                continue
            value = self._value(token, amount)
            if value is not None:
                self._avg_cost_usd[token] = value / amount

    def _revalue(self) -> None:
        total = 0.0
        for token, amount in self._balances.items():
            value = self._value(token, amount)
            if value is not None:
                total += value
        self._equity_usd = total
        if self._prices_usd:
            self._marked = True
        if self._marked and total > self._peak_equity_usd:
            self._peak_equity_usd = total


def _checked_amount(token: str, amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"balance of {token} must be int smallest units, got {type(amount)}")
    return amount
