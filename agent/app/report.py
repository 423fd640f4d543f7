"""The end-of-run report: trades with predicted vs realised profit, the equity chart, and the
live table a rehearsal shows while it runs; and what ``status`` and ``report`` read from the
journal for one run (the latest by default) or for all of them."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.analytics.risk import MonteCarloReport, VarReport
from agent.app.build import AgentParts
from agent.app.journal_views import select_run
from agent.engine.loop import RunReport, TickReport
from agent.store.journal import EquitySnapshot, Journal, RunRecord
from agent.types import FILL_FINALITY_LABELS, FILL_PENDING, FILL_REORGED, Fill, Token

log = logging.getLogger(__name__)


# -- report ------------------------------------------------------------------------------------
@dataclass
class Report:
    blocks: int
    trades: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    predicted_profit_usd: float = 0.0
    realised_profit_usd: float = 0.0
    equity_start_usd: float = 0.0
    equity_end_usd: float = 0.0
    tick_latency_ms: dict[str, float] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    equity_png: str | None = None
    heads_skipped: int = 0  # heads never acted on: a newer one was there when a tick ended

    @property
    def profitable_arbitrages(self) -> int:
        return sum(1 for t in self.trades if t["kind"] == "arb" and t["realised_profit"] > 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "trades": len(self.trades),
            "profitable_arbitrages": self.profitable_arbitrages,
            "exact_trades": sum(1 for t in self.trades if t["exact"]),  # realised == predicted
            "failures": len(self.failures),
            "predicted_profit_usd": round(self.predicted_profit_usd, 2),
            "realised_profit_usd": round(self.realised_profit_usd, 2),
            "equity_start_usd": round(self.equity_start_usd, 2),
            "equity_end_usd": round(self.equity_end_usd, 2),
            "tick_latency_ms": {k: round(v, 2) for k, v in self.tick_latency_ms.items()},
            "rejections": self.rejections,
            "equity_png": self.equity_png,
            "heads_skipped": self.heads_skipped,
        }


def build_report(run: RunReport, parts: AgentParts, out_dir: Path | None) -> Report:
    tokens = parts.tokens
    report = Report(
        blocks=len(run.ticks), failures=list(run.failures), heads_skipped=run.heads_skipped
    )
    for fill in run.fills:
        token = tokens.get(fill.token_in)
        report.trades.append(_trade_row(fill, token))
        report.predicted_profit_usd += fill.predicted_profit_usd or 0.0
        report.realised_profit_usd += fill.profit_usd or 0.0
    for tick in run.ticks:
        for reason, count in tick.rejected.items():
            report.rejections[reason] = report.rejections.get(reason, 0) + count
    if run.equity_usd:
        report.equity_start_usd = run.equity_usd[0][1]
        report.equity_end_usd = run.equity_usd[-1][1]
    report.tick_latency_ms = run.tick_latency_ms()
    if out_dir is not None and run.equity_usd:
        blocks = [f.block_number for f in run.fills if f.block_number is not None]
        report.equity_png = str(plot_equity(run.equity_usd, out_dir / "equity.png", blocks))
    return report


def _trade_row(fill: Fill, token: Token | None) -> dict[str, Any]:
    decimals = token.decimals if token else 18
    return {
        "intent": fill.intent_id,
        "kind": "arb" if fill.token_in == fill.token_out else "swap",
        "token": token.symbol if token else fill.token_in,
        "amount_in": fill.amount_in / 10**decimals,
        "predicted_profit": fill.predicted_profit,
        "realised_profit": fill.profit,
        "predicted_profit_usd": fill.predicted_profit_usd or 0.0,
        "realised_profit_usd": fill.profit_usd or 0.0,
        "exact": fill.profit == fill.predicted_profit,
        "tx_hash": fill.tx_hash,
        "block": fill.block_number,
        "finality": FILL_FINALITY_LABELS.get(fill.finality, fill.finality),
    }


def plot_equity(
    points: list[tuple[int, float]] | Mapping[str, list[tuple[int, float]]],
    path: Path,
    trades: Mapping[str, list[int]] | list[int] | None = None,
) -> Path:
    """Equity (USD) by block; a mapping draws one labelled line per run (block numbers of
    separate runs need not follow each other: a devnet restarts at block 0). ``trades`` are the
    blocks of the fills (per line label for a mapping), marked on the line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    lines = points if isinstance(points, Mapping) else {"equity": points}
    marks = trades if isinstance(trades, Mapping) else {"equity": trades or []}
    marked = 0
    for label, line in lines.items():
        marker = "o" if len(line) < 3 else None  # a run of one block is still seen
        ax.plot([b for b, _ in line], [e for _, e in line], label=label, marker=marker)
        on_line = trade_points(line, marks.get(label, []))
        ax.plot(
            [b for b, _ in on_line],
            [e for _, e in on_line],
            linestyle="none",
            marker="^",
            color="#1a7f37",
            markersize=6,
            label="trades" if not marked and on_line else None,
        )
        marked += len(on_line)
    if isinstance(points, Mapping) or marked:
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel("block")
    ax.set_ylabel("equity (USD)")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_title("defi-agent equity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def trade_points(line: list[tuple[int, float]], blocks: list[int]) -> list[tuple[int, float]]:
    """Where trades sit on an equity line drawn through ``line``'s points: at each trade's
    block, the line's value there (linear between the points around it; the end value
    beyond either end)."""
    ordered = sorted(line)
    if not ordered:
        return []
    keys = [b for b, _ in ordered]
    points = []
    for block in blocks:
        after = bisect.bisect_left(keys, block)
        if after == 0:
            value = ordered[0][1]
        elif after == len(ordered):
            value = ordered[-1][1]
        else:
            (b0, e0), (b1, e1) = ordered[after - 1], ordered[after]
            value = e1 if b1 == block else e0 + (e1 - e0) * (block - b0) / (b1 - b0)
        points.append((block, value))
    return points


def print_report(console: Console, report: Report, title: str) -> None:
    table = Table(
        "block", "kind", "token", "amount in", "predicted", "realised", "exact", title=title
    )
    for t in report.trades:
        table.add_row(
            str(t["block"]),
            t["kind"],
            t["token"],
            f"{t['amount_in']:,.4f}",
            f"${t['predicted_profit_usd']:,.2f}",
            f"${t['realised_profit_usd']:,.2f}",
            "yes" if t["exact"] else "no",
        )
    console.print(table)
    console.print(
        f"blocks {report.blocks} · trades {len(report.trades)} · profitable arbitrages "
        f"{report.profitable_arbitrages} · failed {len(report.failures)}"
    )
    console.print(
        f"predicted PnL ${report.predicted_profit_usd:,.2f} · realised PnL "
        f"${report.realised_profit_usd:,.2f} · equity ${report.equity_start_usd:,.0f} -> "
        f"${report.equity_end_usd:,.0f}"
    )
    if report.rejections:
        console.print(
            "risk rejections: " + ", ".join(f"{k}={v}" for k, v in report.rejections.items())
        )
    latency = report.tick_latency_ms
    console.print(
        "tick latency (decisions, RPC excluded): "
        f"median {latency.get('median', 0):.1f} ms, p95 {latency.get('p95', 0):.1f} ms"
        f" · heads skipped {report.heads_skipped}"
    )
    if report.equity_png:
        console.print(f"equity chart: {report.equity_png}")


# -- the live table ----------------------------------------------------------------------------
class LiveBoard:
    def __init__(self, parts: AgentParts) -> None:
        self.parts = parts
        self.rows: list[TickReport] = []

    def on_tick(self, tick: TickReport) -> None:
        self.rows.append(tick)

    def render(self) -> Table:
        engine = self.parts.engine
        fills = engine.report.fills
        realised = sum(f.profit_usd or 0.0 for f in fills)
        predicted = sum(f.predicted_profit_usd or 0.0 for f in fills)
        view = self.parts.portfolio.view()
        table = Table(
            "block",
            "opportunities",
            "approved",
            "started",
            "rejected",
            title=(
                f"defi-agent demo · trades {len(fills)} · predicted ${predicted:,.2f} · "
                f"realised ${realised:,.2f} · equity ${view.equity_usd:,.0f}"
            ),
        )
        for tick in self.rows[-12:]:
            rejected = ", ".join(f"{k}={v}" for k, v in tick.rejected.items()) or "-"
            table.add_row(
                str(tick.block),
                str(tick.opportunities),
                str(tick.approved),
                str(tick.started),
                rejected,
            )
        return table


# -- the journal, per run (`status`, `report`) -----------------------------------------------
RECENT_BLOCKS = 100  # `status` counts the refusals of this many blocks up to the last one


@dataclass
class JournalSummary:
    """What the journal holds for one run (``run``), or for all runs (``run is None``).

    ``runs`` are every run of the journal whatever was selected (whether an agent is running
    now). Refusal counts are by reason, most frequent first. ``fills`` are those that count
    (final or pending confirmation); ``voided`` those a reorg took out of the chain.
    """

    run: RunRecord | None
    runs: list[RunRecord]
    intents: dict[str, int]
    transactions_not_final: int
    fills: list[Fill]
    fill_runs: dict[str, int | None]  # intent id -> run id
    equity: list[EquitySnapshot]
    refusals: dict[str, int]
    refusals_recent: dict[str, int]
    recent_since_block: int | None
    voided: list[Fill] = field(default_factory=list)

    @property
    def pending_confirmation(self) -> int:
        """Fills still awaiting ``execution.confirmations``."""
        return sum(1 for f in self.fills if f.finality == FILL_PENDING)

    @property
    def scope(self) -> str:
        if self.run is not None:
            return f"run {self.run.id}"
        return "all runs" if self.runs else "the whole journal (no run recorded)"

    @property
    def predicted_profit_usd(self) -> float:
        return sum(f.predicted_profit_usd or 0.0 for f in self.fills)

    @property
    def realised_profit_usd(self) -> float:
        return sum(f.profit_usd or 0.0 for f in self.fills)

    def _label(self, run_id: int | None) -> str:
        label = "no run" if run_id is None else f"run {run_id}"
        modes = {run.id: run.mode for run in self.runs}
        return label + (f" ({modes[run_id]})" if run_id in modes else "")

    def equity_lines(self) -> dict[str, list[tuple[int, float]]]:
        """Equity points (block, USD) per run, each in its own line."""
        lines: dict[str, list[tuple[int, float]]] = {}
        for i, point in enumerate(self.equity):
            block = point.block_number if point.block_number is not None else i
            lines.setdefault(self._label(point.run_id), []).append((block, point.equity_usd))
        return lines

    def trade_blocks(self) -> dict[str, list[int]]:
        """The blocks of the fills per run, labelled as :meth:`equity_lines` labels them."""
        blocks: dict[str, list[int]] = {}
        for fill in self.fills:
            if fill.block_number is not None:
                label = self._label(self.fill_runs.get(fill.intent_id))
                blocks.setdefault(label, []).append(fill.block_number)
        return blocks


async def read_journal(
    journal: Journal, run_id: int | None = None, all_runs: bool = False
) -> JournalSummary:
    """The journal for run ``run_id``, for every run (``all_runs``), or by default for the latest
    run (the whole journal when no run was ever recorded). ``ConfigError`` for an unknown run."""
    run, runs = await select_run(journal, run_id, all_runs)
    scope = None if run is None else run.id
    intents = await journal.list_intents(run_id=scope)
    by_status: dict[str, int] = {}
    for record in intents:
        by_status[str(record.status)] = by_status.get(str(record.status), 0) + 1
    since = None
    if run is not None and run.last_block is not None:
        since = run.last_block - RECENT_BLOCKS + 1
    fills = await journal.list_fills(run_id=scope, include_void=True)
    return JournalSummary(
        run=run,
        runs=runs,
        intents=by_status,
        transactions_not_final=len(await journal.list_non_final()),
        fills=[f for f in fills if f.finality != FILL_REORGED],
        fill_runs=await journal.fill_runs(),
        equity=await journal.equity_history(run_id=scope),
        refusals=await journal.rejection_counts(run_id=scope),
        refusals_recent=await journal.rejection_counts(run_id=scope, since_block=since)
        if since is not None
        else {},
        recent_since_block=since,
        voided=[f for f in fills if f.finality == FILL_REORGED],
    )


def signed_usd(value_usd: float) -> str:
    """``+12.34 USD``: the way the fill alert writes a profit, so the two read the same."""
    return f"{value_usd:+,.2f} USD"


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "mode": run.mode,
        "chain": run.chain_name,
        "chain_id": run.chain_id,
        "config_hash": run.config_hash,
        "started_at": run.started_at.isoformat(),
        "stopped_at": None if run.stopped_at is None else run.stopped_at.isoformat(),
        "stop_reason": run.stop_reason,
        "last_block": run.last_block,
    }


def gas_parts_wei(fill: Fill) -> tuple[int, int]:
    """(L2 execution, L1 data fee) of what ``fill`` paid in gas, wei of the native coin."""
    return fill.gas_cost_wei - fill.l1_fee_wei, fill.l1_fee_wei


def native_amount(wei: int) -> str:
    """Wei as the native coin with 9 decimals (gwei precision), for tables."""
    return f"{wei / 10**18:.9f}"


def fill_json(fill: Fill, run_id: int | None) -> dict[str, Any]:
    return {
        "run": run_id,
        "intent": fill.intent_id,
        "opportunity": fill.opportunity_id,
        "mode": fill.mode,
        "tx_hash": fill.tx_hash,
        "block": fill.block_number,
        "finality": FILL_FINALITY_LABELS.get(fill.finality, fill.finality),
        "predicted_profit": str(fill.predicted_profit),  # token_in units, exact
        "realised_profit": str(fill.profit),
        "predicted_profit_usd": fill.predicted_profit_usd,
        "realised_profit_usd": fill.profit_usd,
        # wei, exact: L2 execution and the L1 data fee (OP-stack chains), predicted and paid
        "gas_l2_wei": str(gas_parts_wei(fill)[0]),
        "gas_l1_wei": str(fill.l1_fee_wei),
        "predicted_gas_l2_wei": str(fill.predicted_gas_cost_wei),
        "predicted_gas_l1_wei": str(fill.predicted_l1_fee_wei),
    }


# -- risk analytics of the journal (`report`, the HTTP API) -----------------------------------
@dataclass(frozen=True)
class JournalRisk:
    """VaR/CVaR of the daily equity returns and the Monte Carlo of the trade returns of what
    a :class:`JournalSummary` holds (see ``agent.analytics.risk`` for the method)."""

    var: VarReport
    monte_carlo: MonteCarloReport

    def to_dict(self) -> dict[str, Any]:
        return {"var": self.var.to_dict(), "monte_carlo": self.monte_carlo.to_dict()}


def journal_risk(
    summary: JournalSummary, seed: int = 0, horizon_trades: int | None = None
) -> JournalRisk:
    """Risk figures of the selected run(s): daily returns and trade returns are taken within
    each run (blocks and portfolios of separate runs are unrelated) and pooled."""
    from agent.analytics.risk import daily_returns, monte_carlo, trade_returns, value_at_risk

    by_run: dict[int | None, list[EquitySnapshot]] = {}
    for point in summary.equity:
        by_run.setdefault(point.run_id, []).append(point)
    returns: list[float] = []
    for points in by_run.values():
        returns += daily_returns([(p.taken_at, p.equity_usd) for p in points])
    trades: list[float] = []
    for run_id, points in by_run.items():
        fills = [
            (f.block_number, f.profit_usd)
            for f in summary.fills
            if f.profit_usd is not None and summary.fill_runs.get(f.intent_id) == run_id
        ]
        trades += trade_returns(fills, [(p.block_number, p.equity_usd) for p in points])
    equity_usd = summary.equity[-1].equity_usd if summary.equity else None
    return JournalRisk(
        var=value_at_risk(returns, equity_usd),
        monte_carlo=monte_carlo(trades, equity_usd, horizon_trades=horizon_trades, seed=seed),
    )


def risk_lines(risk: JournalRisk) -> list[str]:
    """The risk figures as the terminal shows them (one line each)."""
    lines = []
    var = risk.var
    if var.message is not None:
        lines.append(f"VaR/CVaR: {var.message}")
    for level in var.levels:
        usd = "" if level.historical_var_usd is None else f" (${level.historical_var_usd:,.2f})"
        lines.append(
            f"1-day VaR {level.confidence:.0%}: historical {level.historical_var:.2%}{usd}, "
            f"CVaR {level.historical_cvar:.2%}; normal {level.parametric_var:.2%}, "
            f"CVaR {level.parametric_cvar:.2%} ({var.observations} daily returns)"
        )
    mc = risk.monte_carlo
    if mc.message is not None:
        lines.append(f"Monte Carlo: {mc.message}")
    else:
        spread = ", ".join(f"p{p} {v:+.2%}" for p, v in mc.percentiles.items())
        lines.append(
            f"Monte Carlo ({mc.paths:,} paths of {mc.horizon_trades} trades, seed {mc.seed}): "
            f"{spread}; probability of a loss {mc.probability_of_loss:.1%}"
        )
    return lines
