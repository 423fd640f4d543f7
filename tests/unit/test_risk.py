"""The risk gate as the operator relies on it: each limit refuses with its own reason just past
the limit and lets the trade through at the limit; the kill switch and the drawdown halt are
persisted, survive a restart and are lifted only by resume."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.alerts.base import RiskHalt
from agent.market.portfolio import PORTFOLIO_STATE_KEY, Portfolio
from agent.market.snapshot import MarketSnapshot, PortfolioView
from agent.risk.gate import (
    CHECK_ORDER,
    Approved,
    ControlFiles,
    Rejected,
    RejectReason,
    RiskGate,
    RiskLimits,
    journal_rejection,
)
from agent.store import Journal, init_db, session_factory
from agent.types import GasPrice, Intent, Opportunity, RouteHop, Token

WETH = Token("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18)
USDC = Token("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USDC", 6)
WBTC = Token("0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599", "WBTC", 8)
LINK = Token("0x514910771AF9Ca656af840dff83E8264EcF986CA", "LINK", 18)
TOKENS = {t.address: t for t in (WETH, USDC, WBTC, LINK)}
PRICES = {WETH.address: 3000.0, USDC.address: 1.0, WBTC.address: 60_000.0, LINK.address: 15.0}
POOL_A = "0x" + "aa" * 20
POOL_B = "0x" + "bb" * 20
NOW = 1_700_000_000.0
GWEI = 10**9


def snapshot(**changes: object) -> MarketSnapshot:
    base = MarketSnapshot(
        block=100,
        timestamp=NOW,
        chain_id=31337,
        tokens=TOKENS,
        pools={},
        pool_refs={},
        gas=GasPrice(
            base_fee_wei=20 * GWEI,
            next_base_fee_wei=20 * GWEI,
            priority_fee_wei=1 * GWEI,
            max_fee_wei=41 * GWEI,
            block=100,
        ),
        native_price_usd=3000.0,
        prices_usd=PRICES,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def gas(next_base_gwei: float, priority_wei: int = GWEI) -> GasPrice:
    next_base = int(next_base_gwei * GWEI)
    return GasPrice(next_base, next_base, priority_wei, 2 * next_base + priority_wei, 100)


def arb(**changes: object) -> Opportunity:
    """WETH -> USDC -> WETH: 0.1 WETH in (300 USD), 6 USD gross, 1 USD gas; passes every limit."""
    base = Opportunity(
        id="opp-arb",
        strategy="arbitrage",
        kind="arb",
        route=(
            RouteHop(POOL_A, "uniswap_v2", "v2", WETH.address, USDC.address),
            RouteHop(POOL_B, "sushiswap", "v2", USDC.address, WETH.address),
        ),
        token_in=WETH.address,
        token_out=WETH.address,
        amount_in=10**17,
        predicted_amount_out=10**17 + 2 * 10**15,
        predicted_profit=2 * 10**15,
        gross_profit_usd=6.0,
        gas_estimate=200_000,
        gas_cost_usd=1.0,
        net_profit_usd=5.0,
        notional_usd=300.0,
        price_impact_bps=30.0,
        block=100,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def buy_weth(usdc_in: float = 750.0, weth_out: float = 0.25, **changes: object) -> Opportunity:
    """A directional swap USDC -> WETH (grid/DCA style): no predicted profit."""
    base = Opportunity(
        id="opp-swap",
        strategy="grid",
        kind="swap",
        route=(RouteHop(POOL_A, "uniswap_v2", "v2", USDC.address, WETH.address),),
        token_in=USDC.address,
        token_out=WETH.address,
        amount_in=USDC.to_units(str(usdc_in)),
        predicted_amount_out=WETH.to_units(str(weth_out)),
        predicted_profit=0,
        gross_profit_usd=0.0,
        gas_estimate=150_000,
        gas_cost_usd=0.8,
        net_profit_usd=-0.8,
        notional_usd=usdc_in,
        price_impact_bps=10.0,
        block=100,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def view(
    equity: float = 10_000.0,
    peak: float = 10_000.0,
    pnl_today: float = 0.0,
    exposure: dict[str, float] | None = None,
) -> PortfolioView:
    return PortfolioView(
        balances={},
        equity_usd=equity,
        peak_equity_usd=peak,
        realized_pnl_today_usd=pnl_today,
        exposure_usd={WETH.address: 3000.0} if exposure is None else exposure,
    )


@pytest.fixture
def controls(tmp_path: Path) -> ControlFiles:
    return ControlFiles.beside(tmp_path / "data" / "KILL")


@pytest.fixture
def gate(controls: ControlFiles) -> RiskGate:
    return RiskGate(RiskLimits(), controls, clock=lambda: NOW)


def reason_of(decision: Approved | Rejected) -> str | None:
    return None if isinstance(decision, Approved) else str(decision.reason)


def test_a_clean_arbitrage_and_a_clean_swap_pass(gate: RiskGate) -> None:
    assert gate.check(arb(), snapshot(), view(), NOW) == Approved()
    assert gate.check(buy_weth(), snapshot(), view(), NOW) == Approved()


# -- each reason: refused just past the limit, allowed at it ----------------------------------


def test_daily_loss_limit(gate: RiskGate) -> None:
    refused = gate.check(arb(), snapshot(), view(pnl_today=-200.01), NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "daily_loss"
    assert "-200.01" in refused.detail
    assert gate.check(arb(), snapshot(), view(pnl_today=-200.0), NOW) == Approved()


def test_drawdown_past_the_limit_is_refused_even_before_the_halt_is_recorded(
    gate: RiskGate,
) -> None:
    assert reason_of(gate.check(arb(), snapshot(), view(equity=8999.0), NOW)) == "halted_drawdown"
    assert gate.check(arb(), snapshot(), view(equity=9000.0), NOW) == Approved()


@pytest.mark.parametrize(
    ("opportunity", "market", "now", "detail"),
    [
        (arb(block=99), snapshot(), NOW, "block 99"),
        (arb(), snapshot(), NOW + 120.5, "ago"),
        (arb(), snapshot(gas=None), NOW, "no gas price"),
        (arb(), snapshot(stale_pools=frozenset({POOL_B})), NOW, POOL_B),
        (arb(), snapshot(prices_usd={USDC.address: 1.0}), NOW, "no USD price for WETH"),
    ],
    ids=["older-block", "old-snapshot", "no-gas", "stale-pool", "unpriced-token"],
)
def test_stale_data(
    gate: RiskGate, opportunity: Opportunity, market: MarketSnapshot, now: float, detail: str
) -> None:
    refused = gate.check(opportunity, market, view(), now)
    assert isinstance(refused, Rejected)
    assert refused.reason == "stale_data"
    assert detail in refused.detail


def test_snapshot_exactly_at_max_age_is_fresh_enough(gate: RiskGate) -> None:
    assert gate.check(arb(), snapshot(), view(), NOW + 120.0) == Approved()


def test_token_allowlist_by_symbol_or_address(controls: ControlFiles) -> None:
    via_link = arb(
        route=(
            RouteHop(POOL_A, "uniswap_v2", "v2", WETH.address, LINK.address),
            RouteHop(POOL_B, "sushiswap", "v2", LINK.address, WETH.address),
        )
    )
    gate = RiskGate(RiskLimits(), controls)
    refused = gate.check(via_link, snapshot(), view(), NOW)
    assert isinstance(refused, Rejected)
    assert (refused.reason, refused.detail) == ("token_not_allowed", "LINK is not allowlisted")

    by_address = RiskLimits(token_allowlist=frozenset({"WETH", LINK.address}))
    assert RiskGate(by_address, controls).check(via_link, snapshot(), view(), NOW) == Approved()
    assert reason_of(RiskGate(by_address, controls).check(arb(), snapshot(), view(), NOW)) == (
        "token_not_allowed"  # USDC is on the plain route and not listed here
    )


def test_cooldown_after_a_trade_expires_on_the_injected_clock(gate: RiskGate) -> None:
    gate.record_trade(arb(), now=NOW)
    refused = gate.check(arb(), snapshot(), view(), NOW + 29.9)
    assert isinstance(refused, Rejected)
    assert refused.reason == "cooldown"
    assert "USDC/WETH" in refused.detail
    # Any route through the same pair waits too, in either direction.
    assert reason_of(gate.check(buy_weth(), snapshot(), view(), NOW + 29.9)) == "cooldown"
    assert gate.check(arb(), snapshot(), view(), NOW + 30.0) == Approved()


def test_cooldown_after_a_revert_is_longer(gate: RiskGate) -> None:
    gate.record_revert(arb(), now=NOW)
    refused = gate.check(arb(), snapshot(), view(), NOW + 119.0)
    assert isinstance(refused, Rejected)
    assert refused.reason == "cooldown"
    assert "revert" in refused.detail
    assert gate.check(arb(), snapshot(), view(), NOW + 120.0) == Approved()
    assert gate.cooldown_remaining_s(arb(), NOW + 120.0) == 0.0


def test_other_pairs_are_not_cooling_down(gate: RiskGate) -> None:
    gate.record_trade(arb(), now=NOW)
    wbtc = buy_weth(
        route=(RouteHop(POOL_A, "uniswap_v3", "v3", USDC.address, WBTC.address, 500),),
        token_out=WBTC.address,
        predicted_amount_out=WBTC.to_units("0.01"),
    )
    assert gate.check(wbtc, snapshot(), view(), NOW + 1) == Approved()


def test_unprofitable_arbitrage(gate: RiskGate) -> None:
    losing = arb(gross_profit_usd=0.99, gas_cost_usd=1.0, net_profit_usd=-0.01)
    assert reason_of(gate.check(losing, snapshot(), view(), NOW)) == "unprofitable"
    no_profit = arb(predicted_profit=0, predicted_amount_out=10**17)
    assert reason_of(gate.check(no_profit, snapshot(), view(), NOW)) == "unprofitable"
    thin = arb(gross_profit_usd=1.01, gas_cost_usd=0.5, net_profit_usd=0.51)
    assert gate.check(thin, snapshot(), view(), NOW) == Approved()
    # A directional swap has no predicted profit by design; it is not "unprofitable".
    assert gate.check(buy_weth(net_profit_usd=-3.0), snapshot(), view(), NOW) == Approved()


def test_gas_price_cap(gate: RiskGate) -> None:
    refused = gate.check(arb(), snapshot(gas=gas(49, GWEI + 1)), view(), NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "gas_price_cap"
    assert "cap 50 gwei" in refused.detail
    assert gate.check(arb(), snapshot(gas=gas(49, GWEI)), view(), NOW) == Approved()


def test_gas_to_profit_ratio(gate: RiskGate) -> None:
    costly = arb(gross_profit_usd=6.0, gas_cost_usd=3.01, net_profit_usd=2.99)
    assert reason_of(gate.check(costly, snapshot(), view(), NOW)) == "gas_to_profit"
    at_limit = arb(gross_profit_usd=6.0, gas_cost_usd=3.0, net_profit_usd=3.0)
    assert gate.check(at_limit, snapshot(), view(), NOW) == Approved()


def test_slippage_tolerance(gate: RiskGate) -> None:
    refused = gate.check(arb(), snapshot(), view(), NOW, slippage_bps=101)
    assert isinstance(refused, Rejected)
    assert refused.reason == "slippage"
    assert gate.check(arb(), snapshot(), view(), NOW, slippage_bps=100) == Approved()
    loose = RiskGate(RiskLimits(default_slippage_bps=150), gate.controls)
    assert reason_of(loose.check(arb(), snapshot(), view(), NOW)) == "slippage"


def test_slippage_of_a_built_intent(gate: RiskGate) -> None:
    def intent(min_out: int) -> Intent:
        return Intent(
            id="i",
            strategy="arbitrage",
            kind="arb",
            route=arb().route,
            token_in=WETH.address,
            token_out=WETH.address,
            amount_in=10**18,
            min_amount_out=min_out,
            predicted_amount_out=10**18,
            predicted_profit=0,
            predicted_profit_usd=0.0,
            deadline=0,
        )

    assert gate.check_intent(intent(10**18 - 10**16)) == Approved()  # exactly 100 bps
    assert reason_of(gate.check_intent(intent(10**18 - 10**16 - 1))) == "slippage"


def test_price_impact(gate: RiskGate) -> None:
    assert reason_of(gate.check(arb(price_impact_bps=200.1), snapshot(), view(), NOW)) == (
        "price_impact"
    )
    assert gate.check(arb(price_impact_bps=200.0), snapshot(), view(), NOW) == Approved()


def test_trade_size_cap(gate: RiskGate) -> None:
    refused = gate.check(buy_weth(usdc_in=1000.01, weth_out=0.25), snapshot(), view(), NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "exposure_trade"
    assert gate.check(buy_weth(usdc_in=1000.0, weth_out=0.25), snapshot(), view(), NOW) == (
        Approved()
    )
    # The gate values amount_in itself: an understated notional does not slip through.
    understated = buy_weth(usdc_in=1500.0, notional_usd=10.0)
    assert reason_of(gate.check(understated, snapshot(), view(), NOW)) == "exposure_trade"


def test_per_token_exposure_cap(gate: RiskGate) -> None:
    # Buying 0.25 WETH adds 750 USD of WETH exposure; the cap is 5000 USD.
    over = view(exposure={WETH.address: 4250.01})
    refused = gate.check(buy_weth(), snapshot(), over, NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "exposure_token"
    assert "WETH exposure would be 5,000.01 USD" in refused.detail
    assert gate.check(buy_weth(), snapshot(), view(exposure={WETH.address: 4250.0}), NOW) == (
        Approved()
    )


def test_reducing_an_oversized_position_is_allowed(gate: RiskGate) -> None:
    sell_weth = buy_weth(
        route=(RouteHop(POOL_A, "uniswap_v2", "v2", WETH.address, USDC.address),),
        token_in=WETH.address,
        token_out=USDC.address,
        amount_in=WETH.to_units("0.25"),
        predicted_amount_out=USDC.to_units("750"),
    )
    oversized = view(exposure={WETH.address: 9000.0, WBTC.address: 15_000.0})
    assert gate.check(sell_weth, snapshot(), oversized, NOW) == Approved()
    # An arbitrage cycle leaves exposure where it was, so it is not held back by the caps.
    assert gate.check(arb(), snapshot(), oversized, NOW) == Approved()


def test_total_exposure_cap(gate: RiskGate) -> None:
    over = view(exposure={WETH.address: 4000.0, WBTC.address: 15_250.01})
    refused = gate.check(buy_weth(), snapshot(), over, NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "exposure_total"
    at_cap = view(exposure={WETH.address: 4000.0, WBTC.address: 15_250.0})
    assert gate.check(buy_weth(), snapshot(), at_cap, NOW) == Approved()


def test_not_a_number_fails_closed(gate: RiskGate) -> None:
    nan = float("nan")
    for broken in (arb(price_impact_bps=nan), arb(net_profit_usd=nan), buy_weth(notional_usd=nan)):
        refused = gate.check(broken, snapshot(), view(), NOW)
        assert isinstance(refused, Rejected)
        assert (refused.reason, "not a finite number" in refused.detail) == ("stale_data", True)
    assert reason_of(gate.check(arb(), snapshot(), view(equity=nan), NOW)) == "stale_data"


def test_a_check_that_raises_rejects_instead(gate: RiskGate) -> None:
    malformed = arb(route=(None,))
    refused = gate.check(malformed, snapshot(), view(), NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "check_failed"
    assert "AttributeError" in refused.detail


def test_every_reason_is_reachable_and_the_order_is_documented() -> None:
    assert set(CHECK_ORDER) | {RejectReason.CHECK_FAILED} == set(RejectReason)
    assert [str(r) for r in CHECK_ORDER] == [
        "paused",
        "halted_drawdown",
        "daily_loss",
        "stale_data",
        "token_not_allowed",
        "cooldown",
        "unprofitable",
        "gas_price_cap",
        "gas_to_profit",
        "slippage",
        "price_impact",
        "exposure_trade",
        "exposure_token",
        "exposure_total",
    ]
    import agent.risk.gate

    doc = agent.risk.gate.__doc__ or ""
    positions = [doc.index(f"``{reason}``") for reason in CHECK_ORDER]
    assert positions == sorted(positions)


def test_one_reason_the_first_failing_check(gate: RiskGate) -> None:
    everything_wrong = arb(
        price_impact_bps=900.0, gross_profit_usd=1.0, gas_cost_usd=0.9, net_profit_usd=0.1
    )
    market = snapshot(gas=gas(400))
    assert reason_of(gate.check(everything_wrong, market, view(), NOW)) == "gas_price_cap"
    assert reason_of(gate.check(everything_wrong, market, view(pnl_today=-1e6), NOW)) == (
        "daily_loss"
    )
    gate.pause("maintenance")
    refused = gate.check(everything_wrong, market, view(pnl_today=-1e6, equity=1.0), NOW)
    assert refused == Rejected(RejectReason.PAUSED, "maintenance")


# -- kill switch ----------------------------------------------------------------------------


def test_pause_and_resume_through_the_flag_file(gate: RiskGate, controls: ControlFiles) -> None:
    # Another process (`defi-agent pause`) writes the flag file; the gate sees it on refresh.
    controls.write_pause("going to lunch")
    assert gate.check(arb(), snapshot(), view(), NOW) == Approved()  # check() does no I/O
    state = gate.refresh_controls()
    assert state.paused and state.pause_reason == "going to lunch"
    assert state.describe() == "PAUSED: going to lunch"
    assert gate.check(arb(), snapshot(), view(), NOW) == Rejected(
        RejectReason.PAUSED, "going to lunch"
    )

    controls.clear()  # `defi-agent resume`
    assert gate.refresh_controls().resumed
    assert gate.check(arb(), snapshot(), view(), NOW) == Approved()


def test_pause_from_telegram_persists_across_a_restart(controls: ControlFiles) -> None:
    gate = RiskGate(RiskLimits(), controls)
    gate.pause("/pause from chat 42")
    assert controls.kill_switch_file.read_text().strip() == "/pause from chat 42"

    restarted = RiskGate(RiskLimits(), controls)
    assert restarted.paused
    assert reason_of(restarted.check(arb(), snapshot(), view(), NOW)) == "paused"
    assert restarted.resume()
    assert not controls.kill_switch_file.exists()
    assert restarted.check(arb(), snapshot(), view(), NOW) == Approved()
    assert not restarted.resume()  # nothing left to lift


def test_kill_is_a_persisted_pause(controls: ControlFiles) -> None:
    gate = RiskGate(RiskLimits(), controls)
    gate.kill("/kill from chat 42")
    assert reason_of(RiskGate(RiskLimits(), controls).check(arb(), snapshot(), view(), NOW)) == (
        "paused"
    )


def test_a_pause_that_cannot_be_written_still_stops_trading(controls: ControlFiles) -> None:
    # Block the atomic write's temp file so writing fails while reading still works.
    blocked_tmp = controls.kill_switch_file.with_name(f".KILL.{os.getpid()}.tmp")
    blocked_tmp.mkdir(parents=True)
    gate = RiskGate(RiskLimits(), controls)
    gate.pause("disk trouble")
    assert not controls.kill_switch_file.exists()
    gate.refresh_controls()  # no file, yet the pause was never lifted: it must hold
    assert reason_of(gate.check(arb(), snapshot(), view(), NOW)) == "paused"

    blocked_tmp.rmdir()
    gate.refresh_controls()  # the write is retried and now lands
    assert controls.read_pause() == "disk trouble"


def test_a_halt_that_cannot_be_written_still_halts(controls: ControlFiles) -> None:
    blocked_tmp = controls.halt_file.with_name(f".KILL.halted.{os.getpid()}.tmp")
    blocked_tmp.mkdir(parents=True)
    gate = RiskGate(RiskLimits(), controls)
    assert gate.observe(view(equity=5000.0)) is not None
    gate.refresh_controls()
    assert reason_of(gate.check(arb(), snapshot(), view(), NOW)) == "halted_drawdown"
    blocked_tmp.rmdir()
    gate.refresh_controls()
    assert RiskGate(RiskLimits(), controls).halt is not None


def test_unreadable_controls_keep_the_current_state(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the control directory should be")
    gate = RiskGate(RiskLimits(), ControlFiles.beside(blocker / "KILL"))
    gate.pause("disk trouble")
    gate.refresh_controls()
    assert reason_of(gate.check(arb(), snapshot(), view(), NOW)) == "paused"


# -- drawdown halt ----------------------------------------------------------------------------


def test_drawdown_halt_alerts_once_persists_and_survives_a_restart(
    controls: ControlFiles,
) -> None:
    gate = RiskGate(RiskLimits(max_drawdown_pct=10.0), controls, clock=lambda: NOW)
    assert gate.observe(view(equity=9000.0)) is None  # exactly 10 %: still trading

    event = gate.observe(view(equity=8900.0))
    assert isinstance(event, RiskHalt)
    assert event.reason == "drawdown"
    assert "11.00%" in event.detail
    assert controls.halt_file.exists()
    assert gate.observe(view(equity=8000.0)) is None  # one alert per halt, not per tick

    # Equity recovering does not lift the halt; only resume does.
    recovered = view(equity=10_000.0)
    refused = gate.check(arb(), snapshot(), recovered, NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "halted_drawdown"

    restarted = RiskGate(RiskLimits(), controls)
    assert restarted.halt is not None
    assert restarted.halt.reason == "drawdown"
    assert restarted.halt.peak_equity_usd == 10_000.0
    assert reason_of(restarted.check(arb(), snapshot(), recovered, NOW)) == "halted_drawdown"

    assert restarted.resume()
    assert not controls.halt_file.exists()
    assert restarted.check(arb(), snapshot(), recovered, NOW) == Approved()


def test_resume_from_the_cli_lifts_the_halt_of_a_running_gate_and_resets_the_peak(
    controls: ControlFiles,
) -> None:
    portfolio = Portfolio(
        TOKENS, {USDC.address: USDC.to_units("4000"), WETH.address: WETH.to_units("2")}
    )
    gate = RiskGate(RiskLimits(), controls, on_resume=portfolio.reset_peak)
    portfolio.mark(snapshot())  # 10,000 USD
    crashed = portfolio.mark(snapshot(prices_usd={**PRICES, WETH.address: 2400.0}))
    assert crashed.drawdown_pct == pytest.approx(12.0)
    assert gate.observe(crashed) is not None

    controls.clear()  # `defi-agent resume` in another process
    state = gate.refresh_controls()
    assert state.resumed and state.halt is None
    # Drawdown is measured afresh from here: no instant re-halt.
    after = portfolio.view()
    assert after.drawdown_pct == 0.0
    assert gate.observe(after) is None
    assert gate.check(arb(), snapshot(), after, NOW) == Approved()


def test_an_unreadable_halt_file_still_halts(controls: ControlFiles) -> None:
    controls.halt_file.parent.mkdir(parents=True)
    controls.halt_file.write_text("{not json")
    gate = RiskGate(RiskLimits(), controls)
    assert reason_of(gate.check(arb(), snapshot(), view(), NOW)) == "halted_drawdown"


# -- configuration and journal ------------------------------------------------------------------


def test_limits_from_the_risk_config(tmp_path: Path) -> None:
    from agent.config.models import AgentConfig

    config = AgentConfig.from_mapping(
        {
            "chain": {"rpc_urls": ["http://127.0.0.1:8545"]},
            "risk": {
                "max_gas_price_gwei": "30.5",
                "max_slippage_bps": 80,
                "cooldown_s": 12,
                "revert_cooldown_s": 60,
                "token_allowlist": ["WETH", "USDC"],
                "kill_switch_file": "state/KILL",
            },
            "execution": {"slippage_bps": 40},
        },
        base_dir=tmp_path,
    )
    gate = RiskGate.from_config(config.risk, slippage_bps=config.execution.slippage_bps)
    assert gate.limits.max_gas_price_wei == 30_500_000_000
    assert gate.limits.max_slippage_bps == 80
    assert gate.limits.default_slippage_bps == 40
    assert (gate.limits.cooldown_s, gate.limits.revert_cooldown_s) == (12.0, 60.0)
    assert gate.limits.token_allowlist == frozenset({"WETH", "USDC"})
    assert gate.controls.kill_switch_file == (tmp_path / "state" / "KILL").resolve()
    gate.pause("x")
    assert (tmp_path / "state" / "KILL").exists()
    assert (tmp_path / "state" / "KILL.halted").exists() is False


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    engine = await init_db(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def test_rejections_are_journaled_with_their_reason(gate: RiskGate, journal: Journal) -> None:
    opportunity = arb()
    await journal.record_opportunity(opportunity.id, opportunity.strategy, opportunity.kind)
    refused = gate.check(opportunity, snapshot(gas=gas(80)), view(), NOW)
    assert isinstance(refused, Rejected)
    await journal_rejection(journal, opportunity, refused)
    # An opportunity that was never stored is journaled without the reference.
    other = dataclasses.replace(opportunity, id="never-stored")
    await journal_rejection(journal, other, refused, opportunity_journaled=False)
    assert await journal.count_rejections("gas_price_cap") == 2
    assert await journal.count_rejections("paused") == 0


# -- the operator's commands ------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def defi_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator runs it, with a clean environment."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    script = REPO_ROOT / ".venv" / "bin" / "defi-agent"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "agent"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_pause_and_resume_control_a_running_gate(tmp_path: Path) -> None:
    from agent.config.models import AgentConfig

    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        '[chain]\nrpc_urls = ["http://127.0.0.1:8545"]\n\n'
        '[risk]\nmax_drawdown_pct = 5.0\nkill_switch_file = "run/KILL"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = AgentConfig.load(config_file)
    reset_peaks: list[bool] = []
    gate = RiskGate.from_config(config.risk, on_resume=lambda: reset_peaks.append(True))
    assert gate.check(arb(), snapshot(), view(), NOW) == Approved()

    paused = defi_agent(
        "pause", "--config", str(config_file), "--reason", "maintenance window", cwd=elsewhere
    )
    assert paused.returncode == 0, paused.stderr
    assert (tmp_path / "run" / "KILL").exists()  # relative to the config file, not the cwd
    gate.refresh_controls()
    refused = gate.check(arb(), snapshot(), view(), NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == "paused"
    assert "maintenance window" in refused.detail

    # While paused, a drawdown past 5 % also halts the gate.
    assert gate.observe(view(equity=9400.0)) is not None
    # The agent journaled its books (peak 10,000 USD) before it stopped.
    books = {"peak_equity_usd": 10_000.0, "realized_pnl_today_usd": -3.0, "mode": "fork"}
    asyncio.run(_save_books(tmp_path / "data" / "agent.db", books))
    resumed = defi_agent("resume", "-c", str(config_file), cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert "drawdown halt cleared" in resumed.stdout
    assert "kill switch removed" in resumed.stdout
    assert not (tmp_path / "run" / "KILL").exists()
    assert not (tmp_path / "run" / "KILL.halted").exists()

    state = gate.refresh_controls()
    assert state.resumed and not state.paused and state.halt is None
    assert state.describe() == "trading"
    assert reset_peaks == [True]
    assert gate.check(arb(), snapshot(), view(), NOW) == Approved()

    again = defi_agent("resume", "-c", str(config_file), cwd=elsewhere)
    assert again.returncode == 0
    assert "nothing to resume" in again.stdout

    # Each command is in the journal (beside the config: data/agent.db), with who ran it.
    with sqlite3.connect(tmp_path / "data" / "agent.db") as db:
        actions = db.execute(
            "SELECT source, actor, action, argument, accepted, detail FROM control_actions"
            " ORDER BY id"
        ).fetchall()
    assert [(a[0], a[2], a[3], a[4]) for a in actions] == [
        ("cli", "pause", "maintenance window", 1),
        ("cli", "resume", "", 1),
        ("cli", "resume", "", 1),
    ]
    assert all(a[1].startswith("cli ") and "@" in a[1] and " pid " in a[1] for a in actions)
    assert [a[5] for a in actions[1:]] == ["lifted pause and halt", "lifted nothing"]
    # The halt was lifted: the next start measures drawdown afresh (the peak is cleared), the
    # day's realised loss is kept.
    with sqlite3.connect(tmp_path / "data" / "agent.db") as db:
        (saved,) = db.execute(
            "SELECT state FROM strategy_state WHERE strategy = ?", (PORTFOLIO_STATE_KEY,)
        ).fetchone()
    assert json.loads(saved) == {**books, "peak_equity_usd": 0.0}


async def _save_books(db_path: Path, books: dict[str, object]) -> None:
    engine = await init_db(f"sqlite:///{db_path}")
    try:
        await Journal(session_factory(engine)).set_strategy_state(PORTFOLIO_STATE_KEY, books)
    finally:
        await engine.dispose()


def test_cli_pause_with_a_bad_config_exits_2_and_pauses_nothing(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        '[chain]\nrpc_urls = ["http://127.0.0.1:8545"]\n\n'
        '[risk]\nmax_drawdown_pct = 500\nkill_switch_file = "run/KILL"\n'
    )
    result = defi_agent("pause", "--config", str(config_file), cwd=tmp_path)
    assert result.returncode == 2
    assert "risk.max_drawdown_pct" in result.stderr
    assert not (tmp_path / "run" / "KILL").exists()
    missing = defi_agent("resume", "--config", str(tmp_path / "absent.toml"), cwd=tmp_path)
    assert missing.returncode == 2
