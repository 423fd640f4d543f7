"""The risk gate: every opportunity passes these checks before it becomes a trade.

``RiskGate.check(opportunity, snapshot, portfolio, now)`` is pure (no I/O, no clock, no
exceptions): it returns ``Approved()`` or ``Rejected(reason, detail)`` with exactly one
machine-readable reason, the first failing check in this order (``CHECK_ORDER``):

 1. ``paused``            the kill switch is on (flag file, ``defi-agent pause``, Telegram)
 2. ``halted_drawdown``   a drawdown halt is in force, or equity is now more than
                          ``max_drawdown_pct`` below its peak
 3. ``daily_loss``        realised PnL today (UTC) is below ``-daily_loss_limit_usd``
 4. ``stale_data``        the opportunity predates the snapshot block, the snapshot is too old,
                          a pool on the route failed its last read, no gas price, a traded
                          token has no USD price, or a figure is not a finite number
 5. ``token_not_allowed`` a token on the route is not in the allowlist
 6. ``cooldown``          a token pair of the route traded (or reverted) too recently
 7. ``unprofitable``      an arbitrage whose predicted profit or net USD edge is not positive
 8. ``gas_price_cap``     next base fee + priority fee above ``max_gas_price``
 9. ``gas_to_profit``     an arbitrage whose gas cost (L2 execution plus the L1 data fee on
                          OP-stack chains) is too large a share of its gross profit
10. ``slippage``          the slippage tolerance the trade would be sent with is too loose
11. ``price_impact``      the worst hop moves its pool's price too much
12. ``exposure_trade``    the trade's notional is above ``max_trade_usd``
13. ``exposure_token``    after the trade a token's exposure would be above its cap
14. ``exposure_total``    after the trade the total exposure would be above its cap

A figure that is not a finite number (NaN from a broken feed) counts as ``stale_data``: every
comparison fails closed. Should a check itself raise (a bug), the decision is
``Rejected("check_failed")`` and the error is logged; ``check`` never raises.

A value equal to a limit passes; only going past it rejects. Exposure caps only refuse trades
that would increase the exposure (selling down an oversized position is always allowed); an
arbitrage cycle is atomic and leaves exposure unchanged, so caps 13-14 do not apply to it.

Every rejection must be journaled by the caller: ``await journal_rejection(journal, opp, r)``
(the engine calls it right after ``check``). Persistent controls live in two files, read only
in ``refresh_controls()`` (the engine calls it once per tick) and written only by ``pause``
and ``kill``, ``resume``, ``halt_trading`` and ``observe``:

* the kill-switch file (``risk.kill_switch_file``): present = paused; its text is the reason;
* the halt file beside it (``<kill switch name>.halted``, JSON): a drawdown halt. It survives
  restarts; only ``resume`` (``defi-agent resume``, Telegram /resume) removes it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

from agent.alerts.base import RiskHalt
from agent.market.portfolio import DEFAULT_QUOTE_TOKENS, token_matches
from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.risk.controls import _MAX_REASON_CHARS
from agent.risk.controls import ControlFiles as ControlFiles
from agent.risk.controls import ControlState as ControlState
from agent.risk.controls import HaltRecord as HaltRecord
from agent.types import Intent, Opportunity, RouteHop

if TYPE_CHECKING:
    from agent.config.models import RiskConfig
    from agent.store.journal import Journal

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Control = TypeVar("_Control", str, HaltRecord)  # the pause reason or the halt record
_WEI_PER_GWEI = 10**9


class RejectReason(StrEnum):
    """Why the gate refused; the value is what the journal, metrics and alerts carry."""

    PAUSED = "paused"
    HALTED_DRAWDOWN = "halted_drawdown"
    DAILY_LOSS = "daily_loss"
    STALE_DATA = "stale_data"
    TOKEN_NOT_ALLOWED = "token_not_allowed"
    COOLDOWN = "cooldown"
    UNPROFITABLE = "unprofitable"
    GAS_PRICE_CAP = "gas_price_cap"
    GAS_TO_PROFIT = "gas_to_profit"
    SLIPPAGE = "slippage"
    PRICE_IMPACT = "price_impact"
    EXPOSURE_TRADE = "exposure_trade"
    EXPOSURE_TOKEN = "exposure_token"
    EXPOSURE_TOTAL = "exposure_total"
    # Not a limit: a check raised (a bug). Fails closed; never part of CHECK_ORDER.
    CHECK_FAILED = "check_failed"


@dataclass(frozen=True, slots=True)
class Approved:
    """The opportunity passed every check."""

    approved: bool = field(default=True, init=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The opportunity failed ``reason``; ``detail`` says by how much (no secrets, ever)."""

    reason: RejectReason
    detail: str = ""
    approved: bool = field(default=False, init=False)


RiskDecision = Approved | Rejected


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The gate's limits. Gas in wei per gas; USD are valuations; bps = 0.01 %.

    ``token_allowlist`` and ``quote_tokens`` hold symbols or checksummed addresses (a token
    matches by either); ``token_allowlist=None`` allows every token, an empty set none.
    ``default_slippage_bps`` is the tolerance the executor applies (``execution.slippage_bps``)
    when a caller does not say otherwise. ``max_snapshot_age_s=None`` disables the age check.
    """

    max_gas_price_wei: int = 50 * _WEI_PER_GWEI
    max_gas_to_profit_ratio: float = 0.5
    max_slippage_bps: int = 100
    max_price_impact_bps: float = 200.0
    max_trade_usd: float = 1_000.0
    max_token_exposure_usd: float = 5_000.0
    max_total_exposure_usd: float = 20_000.0
    daily_loss_limit_usd: float = 200.0
    max_drawdown_pct: float = 10.0
    token_allowlist: frozenset[str] | None = frozenset({"WETH", "USDC", "WBTC", "DAI"})
    quote_tokens: frozenset[str] = DEFAULT_QUOTE_TOKENS
    cooldown_s: float = 30.0
    revert_cooldown_s: float = 120.0
    refused_token_cooldown_s: float = 3_600.0
    max_snapshot_age_s: float | None = 120.0
    default_slippage_bps: int = 50

    @classmethod
    def from_config(
        cls,
        risk: RiskConfig,
        *,
        slippage_bps: int = 50,
        max_snapshot_age_s: float | None = 120.0,
        quote_tokens: Iterable[str] = DEFAULT_QUOTE_TOKENS,
    ) -> RiskLimits:
        """Limits from the ``[risk]`` section. ``slippage_bps`` is ``execution.slippage_bps``;
        ``max_snapshot_age_s`` and ``quote_tokens`` are not operator settings."""
        return cls(
            max_gas_price_wei=risk.max_gas_price_wei,
            max_gas_to_profit_ratio=risk.max_gas_to_profit_ratio,
            max_slippage_bps=risk.max_slippage_bps,
            max_price_impact_bps=float(risk.max_price_impact_bps),
            max_trade_usd=risk.max_trade_usd,
            max_token_exposure_usd=risk.max_token_exposure_usd,
            max_total_exposure_usd=risk.max_total_exposure_usd,
            daily_loss_limit_usd=risk.daily_loss_limit_usd,
            max_drawdown_pct=risk.max_drawdown_pct,
            token_allowlist=frozenset(risk.token_allowlist),
            quote_tokens=frozenset(quote_tokens),
            cooldown_s=risk.cooldown_s,
            revert_cooldown_s=risk.revert_cooldown_s,
            refused_token_cooldown_s=risk.refused_token_cooldown_s,
            max_snapshot_age_s=max_snapshot_age_s,
            default_slippage_bps=slippage_bps,
        )


class Routed(Protocol):
    """Anything with a route: ``Opportunity`` and ``Intent`` both qualify."""

    @property
    def route(self) -> tuple[RouteHop, ...]: ...

    @property
    def token_in(self) -> str: ...

    @property
    def token_out(self) -> str: ...


def route_pairs(trade: Routed) -> frozenset[frozenset[str]]:
    """The unordered token pairs a trade touches: one per hop (token_in/out without a route)."""
    pairs = {frozenset((hop.token_in, hop.token_out)) for hop in trade.route}
    if not pairs and trade.token_in != trade.token_out:
        pairs.add(frozenset((trade.token_in, trade.token_out)))
    return frozenset(pairs)


def intent_slippage_bps(intent: Intent) -> float:
    """How far below the prediction ``min_amount_out`` lets the fill go, in bps."""
    if intent.predicted_amount_out <= 0:
        return math.inf
    shortfall = intent.predicted_amount_out - intent.min_amount_out
    return max(0.0, shortfall * 10_000 / intent.predicted_amount_out)


@dataclass(frozen=True, slots=True)
class _Case:
    """One opportunity under review, with everything the rules may look at."""

    opportunity: Opportunity
    snapshot: MarketSnapshot
    portfolio: PortfolioView
    now: float
    slippage_bps: float | None


@dataclass(slots=True)
class _Cooldown:
    until: float
    cause: str  # "trade" | "revert"


class RiskGate:
    """Pure checks plus the persistent controls (kill switch, drawdown halt) and cooldowns.

    The constructor reads the control files once (so a restarted agent starts paused/halted
    if it was); after that, files are read only in ``refresh_controls``. ``on_resume`` is called
    whenever a drawdown halt is lifted (here or by ``defi-agent resume`` seen in
    ``refresh_controls``): the engine passes ``portfolio.reset_peak`` so drawdown is measured
    afresh and the agent does not re-halt at once. ``clock`` (unix seconds) stamps halt records.
    """

    def __init__(
        self,
        limits: RiskLimits,
        controls: ControlFiles,
        *,
        on_resume: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.controls = controls
        self._on_resume = on_resume
        self._clock = clock
        self._pause_reason: str | None = None
        self._pause_persisted = False
        self._halt: HaltRecord | None = None
        self._halt_persisted = False
        self._cooldowns: dict[frozenset[str], _Cooldown] = {}
        # Tokens that reverted our transfers; kept after the cooldown until one trades again,
        # so a token that still refuses us is not reported again.
        self._refused_tokens: dict[str, _Cooldown] = {}
        self.refresh_controls()

    @classmethod
    def from_config(
        cls,
        risk: RiskConfig,
        *,
        slippage_bps: int = 50,
        max_snapshot_age_s: float | None = 120.0,
        on_resume: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> RiskGate:
        """A gate with ``RiskLimits.from_config(risk)`` and the configured kill-switch file.

        ``slippage_bps`` is ``execution.slippage_bps``; ``max_snapshot_age_s`` compares the
        snapshot's ``timestamp`` (its block's) with ``now`` (None when replaying history, e.g.
        backtests): a block older than that is not traded on.
        """
        return cls(
            RiskLimits.from_config(
                risk, slippage_bps=slippage_bps, max_snapshot_age_s=max_snapshot_age_s
            ),
            ControlFiles.beside(risk.kill_switch_file),
            on_resume=on_resume,
            clock=clock,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._pause_reason is not None

    @property
    def pause_reason(self) -> str | None:
        return self._pause_reason

    @property
    def halt(self) -> HaltRecord | None:
        """The drawdown halt in force, if any."""
        return self._halt

    def control_state(self, resumed: bool = False) -> ControlState:
        return ControlState(self.paused, self._pause_reason, self._halt, resumed)

    # -- the check -----------------------------------------------------------------------------

    def check(
        self,
        opportunity: Opportunity,
        snapshot: MarketSnapshot,
        portfolio: PortfolioView,
        now: float,
        *,
        slippage_bps: float | None = None,
    ) -> RiskDecision:
        """Approve or reject ``opportunity`` (pure; ``now`` is unix seconds).

        ``slippage_bps`` is the tolerance the executor will put into ``amountOutMinimum`` for
        this trade (default ``limits.default_slippage_bps``). See the module docstring for the
        order of the checks; the first failing one is the reason.
        """
        case = _Case(opportunity, snapshot, portfolio, now, slippage_bps)
        for reason, rule in _RULES:
            try:
                detail = rule(self, case)
            except Exception as exc:
                log.exception("risk check %s failed on opportunity %s", reason, opportunity.id)
                return Rejected(RejectReason.CHECK_FAILED, f"{type(exc).__name__} in {reason}")
            if detail is not None:
                return Rejected(reason, detail)
        return Approved()

    def check_intent(self, intent: Intent) -> RiskDecision:
        """Last guard before signing: controls still allow trading and ``min_amount_out``
        is within ``max_slippage_bps`` of the prediction (pure)."""
        if self._pause_reason is not None:
            return Rejected(RejectReason.PAUSED, self._pause_reason)
        if self._halt is not None:
            return Rejected(RejectReason.HALTED_DRAWDOWN, self._halt.detail or self._halt.reason)
        slip = intent_slippage_bps(intent)
        if slip > self.limits.max_slippage_bps:
            return Rejected(
                RejectReason.SLIPPAGE,
                f"min_amount_out allows {slip:.1f} bps > {self.limits.max_slippage_bps} bps",
            )
        return Approved()

    # Each rule returns None (pass) or the rejection's detail; _RULES pairs it with its reason.

    def _rule_paused(self, case: _Case) -> str | None:
        return self._pause_reason

    def _rule_halted(self, case: _Case) -> str | None:
        if self._halt is not None:
            return self._halt.detail or self._halt.reason
        pf = case.portfolio
        if pf.drawdown_pct > self.limits.max_drawdown_pct:
            return (
                f"drawdown {pf.drawdown_pct:.2f}% > {self.limits.max_drawdown_pct:g}% "
                f"(equity {pf.equity_usd:,.2f} USD, peak {pf.peak_equity_usd:,.2f} USD)"
            )
        return None

    def _rule_daily_loss(self, case: _Case) -> str | None:
        pnl = case.portfolio.realized_pnl_today_usd
        if pnl < -self.limits.daily_loss_limit_usd:
            return (
                f"realised PnL today {pnl:,.2f} USD < -{self.limits.daily_loss_limit_usd:,.2f} USD"
            )
        return None

    def _rule_stale(self, case: _Case) -> str | None:
        opp, snap = case.opportunity, case.snapshot
        if opp.block < snap.block:
            return f"predicted at block {opp.block} < snapshot block {snap.block}"
        max_age = self.limits.max_snapshot_age_s
        # How long ago the snapshot was read, on our clock. A chain that stopped making blocks
        # is the head monitor's call (it knows the chain's block time); a quiet devnet's head
        # can be old and still be the chain's state.
        if max_age is not None and case.now - snap.feeds_now > max_age:
            return (
                f"the snapshot of block {snap.block} was read {case.now - snap.feeds_now:.0f}s "
                f"ago > {max_age:g}s"
            )
        if snap.gas is None:
            return "no gas price"
        for hop in opp.route:
            if hop.pool in snap.stale_pools:
                return f"pool {hop.pool} failed its last read"
        figures = {
            "gross_profit_usd": opp.gross_profit_usd,
            "gas_cost_usd": opp.gas_cost_usd,
            "net_profit_usd": opp.net_profit_usd,
            "notional_usd": opp.notional_usd,
            "price_impact_bps": opp.price_impact_bps,
            "equity_usd": case.portfolio.equity_usd,
            "peak_equity_usd": case.portfolio.peak_equity_usd,
            "realized_pnl_today_usd": case.portfolio.realized_pnl_today_usd,
            "total_exposure_usd": case.portfolio.total_exposure_usd,
        }
        for name, value in figures.items():
            if not math.isfinite(value):
                return f"{name} is not a finite number ({value})"
        for token in (opp.token_in, opp.token_out):
            price = snap.prices_usd.get(token)
            if price is None or price <= 0 or token not in snap.tokens:
                return f"no USD price for {_name(token, snap)}"
        return None

    def _rule_allowlist(self, case: _Case) -> str | None:
        allowlist = self.limits.token_allowlist
        if allowlist is None:
            return None
        for token in _route_tokens(case.opportunity):
            if not token_matches(token, allowlist, case.snapshot.tokens):
                return f"{_name(token, case.snapshot)} is not allowlisted"
        return None

    def _rule_cooldown(self, case: _Case) -> str | None:
        for token in _route_tokens(case.opportunity):
            refused = self._refused_tokens.get(token)
            if refused is not None and case.now < refused.until:
                return (
                    f"{_name(token, case.snapshot)} cooling down after it {refused.cause} for "
                    f"{refused.until - case.now:.0f}s more"
                )
        for pair in sorted(route_pairs(case.opportunity), key=sorted):
            cooldown = self._cooldowns.get(pair)
            if cooldown is not None and case.now < cooldown.until:
                names = "/".join(sorted(_name(t, case.snapshot) for t in pair))
                return (
                    f"{names} cooling down after a {cooldown.cause} for "
                    f"{cooldown.until - case.now:.0f}s more"
                )
        return None

    def _rule_unprofitable(self, case: _Case) -> str | None:
        opp = case.opportunity
        # A directional swap (grid, DCA, whale-follow) carries no predicted profit by design.
        if opp.kind != "arb":
            return None
        # Judged on L2 gas: an edge the L1 data fee eats is the gas rule's case
        # (``gas_to_profit``, which weighs the total), not a trade that never paid.
        if opp.predicted_profit <= 0 or opp.net_profit_usd + opp.l1_fee_usd <= 0:
            return (
                f"predicted profit {opp.predicted_profit} units, "
                f"net {opp.net_profit_usd:,.4f} USD after gas"
            )
        return None

    def _rule_gas_price(self, case: _Case) -> str | None:
        gas = case.snapshot.gas
        assert gas is not None  # _rule_stale rejected a snapshot without gas
        # What the next block will actually charge us per gas.
        expected_wei = gas.next_base_fee_wei + gas.priority_fee_wei
        if expected_wei > self.limits.max_gas_price_wei:
            return (
                f"gas {expected_wei / _WEI_PER_GWEI:.2f} gwei > cap "
                f"{self.limits.max_gas_price_wei / _WEI_PER_GWEI:g} gwei"
            )
        return None

    def _rule_gas_to_profit(self, case: _Case) -> str | None:
        opp = case.opportunity
        if opp.kind != "arb" or opp.gross_profit_usd <= 0:
            return None
        # gas_cost_usd is the total: L2 execution plus the L1 data fee where the chain has one.
        ratio = opp.gas_cost_usd / opp.gross_profit_usd
        if ratio > self.limits.max_gas_to_profit_ratio or ratio >= 1:
            l1 = f" (L1 data fee {opp.l1_fee_usd:,.4f} USD)" if opp.l1_fee_usd else ""
            return (
                f"gas {opp.gas_cost_usd:,.4f} USD{l1} is {ratio:.2f} of gross profit "
                f"{opp.gross_profit_usd:,.4f} USD > {self.limits.max_gas_to_profit_ratio:g}"
            )
        return None

    def _rule_slippage(self, case: _Case) -> str | None:
        tolerance = case.slippage_bps
        if tolerance is None:
            tolerance = self.limits.default_slippage_bps
        if tolerance > self.limits.max_slippage_bps:
            return f"slippage tolerance {tolerance:g} bps > {self.limits.max_slippage_bps} bps"
        return None

    def _rule_price_impact(self, case: _Case) -> str | None:
        impact = case.opportunity.price_impact_bps
        if impact > self.limits.max_price_impact_bps:
            return f"price impact {impact:.1f} bps > {self.limits.max_price_impact_bps:g} bps"
        return None

    def _rule_trade_size(self, case: _Case) -> str | None:
        opp = case.opportunity
        # Trust the larger of the strategy's figure and our own valuation of amount_in.
        notional = max(opp.notional_usd, case.snapshot.value_usd(opp.token_in, opp.amount_in))
        if notional > self.limits.max_trade_usd:
            return f"trade {notional:,.2f} USD > {self.limits.max_trade_usd:,.2f} USD"
        return None

    def _rule_token_exposure(self, case: _Case) -> str | None:
        for token, delta in self._exposure_deltas(case.opportunity, case.snapshot).items():
            after = max(0.0, case.portfolio.exposure_usd.get(token, 0.0) + delta)
            if delta > 0 and after > self.limits.max_token_exposure_usd:
                return (
                    f"{_name(token, case.snapshot)} exposure would be {after:,.2f} USD > "
                    f"{self.limits.max_token_exposure_usd:,.2f} USD"
                )
        return None

    def _rule_total_exposure(self, case: _Case) -> str | None:
        delta = sum(self._exposure_deltas(case.opportunity, case.snapshot).values())
        after = case.portfolio.total_exposure_usd + delta
        if delta > 0 and after > self.limits.max_total_exposure_usd:
            return (
                f"total exposure would be {after:,.2f} USD > "
                f"{self.limits.max_total_exposure_usd:,.2f} USD"
            )
        return None

    def _exposure_deltas(self, opp: Opportunity, snap: MarketSnapshot) -> dict[str, float]:
        """USD change of each non-quote token's exposure if ``opp`` fills as predicted."""
        if opp.token_in == opp.token_out:
            return {}  # an atomic cycle ends where it started (plus a small profit)
        deltas: dict[str, float] = {}
        if not token_matches(opp.token_in, self.limits.quote_tokens, snap.tokens):
            deltas[opp.token_in] = -snap.value_usd(opp.token_in, opp.amount_in)
        if not token_matches(opp.token_out, self.limits.quote_tokens, snap.tokens):
            deltas[opp.token_out] = snap.value_usd(opp.token_out, opp.predicted_amount_out)
        return deltas

    # -- controls (the only I/O) ---------------------------------------------------------------

    def refresh_controls(self) -> ControlState:
        """Re-read the kill-switch and halt files (call once per tick, before ``check``).

        A control set here whose file could not be written stays in force and its write is
        retried; a control whose file disappeared (``defi-agent resume``) is lifted.
        """
        pause_lifted = self._refresh_pause()
        halt_lifted = self._refresh_halt()
        return self.control_state(resumed=pause_lifted or halt_lifted)

    def _refresh_pause(self) -> bool:
        self._pause_reason, self._pause_persisted, lifted = self._sync_control(
            self.controls.read_pause,
            self.controls.write_pause,
            self._pause_reason,
            self._pause_persisted,
            "kill switch file removed: trading resumes",
        )
        return lifted

    def _refresh_halt(self) -> bool:
        self._halt, self._halt_persisted, lifted = self._sync_control(
            self.controls.read_halt,
            self.controls.write_halt,
            self._halt,
            self._halt_persisted,
            "halt file removed: drawdown halt lifted",
        )
        if lifted:
            self._notify_resume()
        return lifted

    def _sync_control(
        self,
        read: Callable[[], _Control | None],
        write: Callable[[_Control], None],
        value: _Control | None,
        persisted: bool,
        lifted_message: str,
    ) -> tuple[_Control | None, bool, bool]:
        """One persisted control against its file: ``(value, persisted, lifted)``.

        The file wins when it holds a value; a value set here whose write failed is written
        again; a persisted value whose file is gone was lifted (``defi-agent resume``). An
        unreadable file changes nothing.
        """
        readable, on_disk = self._read(read)
        if not readable:
            return value, persisted, False
        if on_disk is not None:
            return on_disk, True, False
        if value is None:
            return None, False, False
        if not persisted:
            held = value
            return value, self._write(lambda: write(held)), False
        log.info(lifted_message)
        return None, False, True

    def pause(self, reason: str = "paused by operator") -> None:
        """Kill switch on: no new trades until ``resume``. Persisted in the flag file, so it
        survives a restart and ``defi-agent resume`` can lift it."""
        self._pause_reason = reason.strip()[:_MAX_REASON_CHARS] or "paused by operator"
        self._pause_persisted = self._write(lambda: self.controls.write_pause(reason))

    def kill(self, reason: str = "killed by operator") -> None:
        """Emergency stop: the same persisted pause; the engine then shuts itself down."""
        self.pause(reason)

    def resume(self) -> bool:
        """Lift the kill switch and any drawdown halt (memory and files). Returns whether
        anything was lifted. Calls ``on_resume`` when a halt was lifted."""
        was_halted = self._halt is not None
        was_paused = self._pause_reason is not None
        removed_pause, removed_halt = self.controls.clear()
        self._pause_reason, self._pause_persisted = None, False
        self._halt, self._halt_persisted = None, False
        if was_halted or removed_halt:
            self._notify_resume()
        return was_halted or was_paused or removed_pause or removed_halt

    def halt_trading(
        self, reason: str, detail: str, portfolio: PortfolioView | None = None
    ) -> RiskHalt:
        """Halt all trading until ``resume``; persisted in the halt file. Returns the alert
        event for the engine to fan out."""
        now = self._clock()
        record = HaltRecord(
            reason=reason,
            detail=detail,
            at=now,
            equity_usd=portfolio.equity_usd if portfolio else 0.0,
            peak_equity_usd=portfolio.peak_equity_usd if portfolio else 0.0,
            drawdown_pct=portfolio.drawdown_pct if portfolio else 0.0,
        )
        self._halt = record
        self._halt_persisted = self._write(lambda: self.controls.write_halt(record))
        log.critical("trading halted: %s (%s)", reason, detail)
        return RiskHalt(reason=reason, detail=detail, at=now)

    def observe(self, portfolio: PortfolioView) -> RiskHalt | None:
        """Call after each ``Portfolio.mark``: halts (and persists the halt) when drawdown
        from the equity peak is past ``max_drawdown_pct``. Returns the alert event on the tick
        the halt starts, None otherwise."""
        if self._halt is not None or portfolio.drawdown_pct <= self.limits.max_drawdown_pct:
            return None
        detail = (
            f"drawdown {portfolio.drawdown_pct:.2f}% > {self.limits.max_drawdown_pct:g}% "
            f"(equity {portfolio.equity_usd:,.2f} USD, peak {portfolio.peak_equity_usd:,.2f} USD)"
            "; trading stays halted until `defi-agent resume` or /resume"
        )
        return self.halt_trading("drawdown", detail, portfolio)

    # -- cooldowns (in memory) -----------------------------------------------------------------

    def record_trade(self, trade: Routed, now: float) -> None:
        """A trade on ``trade``'s route filled: its pairs cool down for ``cooldown_s``."""
        self._start_cooldown(trade, now + self.limits.cooldown_s, "trade")
        for hop in trade.route:  # a token that traded works again
            self._refused_tokens.pop(hop.token_in, None)
            self._refused_tokens.pop(hop.token_out, None)

    def record_refused_token(self, token: str, now: float, reason: str) -> bool:
        """``token`` reverted a transfer to or from us: it cools down for
        ``refused_token_cooldown_s``. True when this is news (it had not been refused since it
        last traded), i.e. when it deserves an alert."""
        news = token not in self._refused_tokens
        until = now + self.limits.refused_token_cooldown_s
        self._refused_tokens[token] = _Cooldown(until, f"refused a transfer ({reason})")
        return news

    def record_revert(self, trade: Routed, now: float) -> None:
        """A trade reverted: its pairs cool down for ``revert_cooldown_s``."""
        self._start_cooldown(trade, now + self.limits.revert_cooldown_s, "revert")

    def cooldown_remaining_s(self, trade: Routed, now: float) -> float:
        """Seconds until every pair of ``trade`` may trade again (0 when free)."""
        remaining = [c.until - now for p in route_pairs(trade) if (c := self._cooldowns.get(p))]
        return max([0.0, *remaining])

    def _start_cooldown(self, trade: Routed, until: float, cause: str) -> None:
        for pair in route_pairs(trade):
            current = self._cooldowns.get(pair)
            if current is None or current.until < until:
                self._cooldowns[pair] = _Cooldown(until, cause)
        # Forget long-expired entries so the map stays the size of the active pairs.
        expired = [p for p, c in self._cooldowns.items() if c.until < until - 86_400]
        for pair in expired:
            del self._cooldowns[pair]

    # -- internals -----------------------------------------------------------------------------

    def _notify_resume(self) -> None:
        if self._on_resume is not None:
            self._on_resume()

    @staticmethod
    def _read(reader: Callable[[], _T | None]) -> tuple[bool, _T | None]:
        """(read ok, value). An unreadable control file leaves the gate's state unchanged."""
        try:
            return True, reader()
        except OSError as exc:
            log.error("cannot read risk control file: %s", exc.strerror)
            return False, None

    @staticmethod
    def _write(writer: Callable[[], None]) -> bool:
        try:
            writer()
        except OSError as exc:
            log.error("cannot persist risk control (kept in memory, retried): %s", exc.strerror)
            return False
        return True


def _route_tokens(opp: Opportunity) -> list[str]:
    seen: dict[str, None] = {opp.token_in: None, opp.token_out: None}
    for hop in opp.route:
        seen.setdefault(hop.token_in)
        seen.setdefault(hop.token_out)
    return list(seen)


def _name(token: str, snapshot: MarketSnapshot) -> str:
    meta = snapshot.tokens.get(token)
    return meta.symbol if meta is not None else token


async def journal_rejection(
    journal: Journal,
    opportunity: Opportunity,
    rejected: Rejected,
    *,
    opportunity_journaled: bool = True,
    intent_id: str | None = None,
) -> None:
    """Record a refusal with ``Journal.record_rejection``. The engine calls this for every
    ``Rejected``. ``opportunity_journaled=False`` when the opportunity was not stored with
    ``record_opportunity`` (the rejection row references it by foreign key)."""
    await journal.record_rejection(
        strategy=opportunity.strategy,
        reason=str(rejected.reason),
        detail=rejected.detail,
        opportunity_id=opportunity.id if opportunity_journaled else None,
        intent_id=intent_id,
    )


# The checks in order; CHECK_ORDER is derived from this table, so the docs and code agree.
_RULES: tuple[tuple[RejectReason, Callable[[RiskGate, _Case], str | None]], ...] = (
    (RejectReason.PAUSED, RiskGate._rule_paused),
    (RejectReason.HALTED_DRAWDOWN, RiskGate._rule_halted),
    (RejectReason.DAILY_LOSS, RiskGate._rule_daily_loss),
    (RejectReason.STALE_DATA, RiskGate._rule_stale),
    (RejectReason.TOKEN_NOT_ALLOWED, RiskGate._rule_allowlist),
    (RejectReason.COOLDOWN, RiskGate._rule_cooldown),
    (RejectReason.UNPROFITABLE, RiskGate._rule_unprofitable),
    (RejectReason.GAS_PRICE_CAP, RiskGate._rule_gas_price),
    (RejectReason.GAS_TO_PROFIT, RiskGate._rule_gas_to_profit),
    (RejectReason.SLIPPAGE, RiskGate._rule_slippage),
    (RejectReason.PRICE_IMPACT, RiskGate._rule_price_impact),
    (RejectReason.EXPOSURE_TRADE, RiskGate._rule_trade_size),
    (RejectReason.EXPOSURE_TOKEN, RiskGate._rule_token_exposure),
    (RejectReason.EXPOSURE_TOTAL, RiskGate._rule_total_exposure),
)
CHECK_ORDER: tuple[RejectReason, ...] = tuple(reason for reason, _ in _RULES)
