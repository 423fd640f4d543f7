"""The journal's report.html (``defi-agent report``): equity per run with its trades marked,
against holding the run's starting balances; the traded tokens' prices with buys and sells;
drawdown; a per-day table; the risk figures; the fills.

Holding the starting balances: the balances of the run's first equity snapshot valued, at every
later snapshot, at the prices that snapshot recorded (USD per smallest unit; a token the
snapshot did not price keeps its last price). Journals written before prices were recorded
(migration 0005) have no benchmark, and the page says so.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.analytics.html import (
    Chart,
    NoteSection,
    Page,
    Section,
    TableSection,
    block_axis,
    money,
    money_axis,
    new_figure,
    percent,
    render,
    svg_of,
    thin,
)
from agent.analytics.periods import per_period
from agent.app.report import JournalRisk, JournalSummary, signed_usd, trade_points
from agent.store.journal import EquitySnapshot
from agent.types import FILL_FINALITY_LABELS, Fill


@dataclass(frozen=True)
class RunCurves:
    """One run's equity (block, USD), its benchmark and its fills."""

    run_id: int | None
    label: str
    points: list[EquitySnapshot]
    hold: list[tuple[int, float]]  # empty: no prices recorded
    fills: list[Fill]

    @property
    def equity(self) -> list[tuple[int, float]]:
        return [(_block(p, i), p.equity_usd) for i, p in enumerate(self.points)]


def _block(point: EquitySnapshot, index: int) -> int:
    return point.block_number if point.block_number is not None else index


def hold_curve(points: Sequence[EquitySnapshot]) -> list[tuple[int, float]]:
    """The first snapshot's balances valued at every snapshot's prices (see the module
    docstring); empty when the first snapshot recorded no prices."""
    if not points or not points[0].unit_prices_usd:
        return []
    start = points[0].balances
    prices: dict[str, float] = {}
    curve = []
    for i, point in enumerate(points):
        prices.update(point.unit_prices_usd)
        value = sum(amount * prices.get(token, 0.0) for token, amount in start.items())
        curve.append((_block(point, i), value))
    return curve


def run_curves(summary: JournalSummary) -> list[RunCurves]:
    modes = {run.id: run.mode for run in summary.runs}
    grouped: dict[int | None, list[EquitySnapshot]] = {}
    for point in summary.equity:
        grouped.setdefault(point.run_id, []).append(point)
    curves = []
    for run_id, points in grouped.items():
        label = "no run" if run_id is None else f"run {run_id}"
        if run_id in modes:
            label += f" ({modes[run_id]})"
        fills = [f for f in summary.fills if summary.fill_runs.get(f.intent_id) == run_id]
        curves.append(RunCurves(run_id, label, points, hold_curve(points), fills))
    return curves


def _gid(kind: str, run_id: int | None) -> str:
    return f"{kind}-run-{'none' if run_id is None else run_id}"


def _equity_chart(curves: list[RunCurves]) -> str:
    figure, axes = new_figure()
    trades: list[tuple[int, float]] = []
    for curve in curves:
        line = curve.equity
        drawn = thin(line)
        axes.plot(
            [b for b, _ in drawn],
            [e for _, e in drawn],
            label=curve.label,
            marker="o" if len(line) < 3 else None,
            gid=_gid("equity", curve.run_id),
        )
        if curve.hold:
            hold = thin(curve.hold)
            axes.plot(
                [b for b, _ in hold],
                [v for _, v in hold],
                linestyle="--",
                linewidth=1.0,
                label=f"{curve.label}: holding its starting balances",
                gid=_gid("benchmark", curve.run_id),
            )
        blocks = [f.block_number for f in curve.fills if f.block_number is not None]
        trades += trade_points(line, blocks)
    axes.plot(
        [b for b, _ in trades],
        [e for _, e in trades],
        linestyle="none",
        marker="^",
        markersize=7,
        color="#1a7f37",
        label=f"trades ({len(trades)})",
        gid="trade-markers",
    )
    axes.set_xlabel("block")
    axes.set_ylabel("equity (USD)")
    money_axis(axes.yaxis)
    block_axis(axes.xaxis)
    axes.legend(loc="best", fontsize="small")
    return svg_of(figure)


def _name(token: str, names: Mapping[str, str]) -> str:
    return names.get(token, f"{token[:6]}…{token[-4:]}")


def _price_chart(curves: list[RunCurves], names: Mapping[str, str]) -> str | None:
    """Each traded token's price relative to the run's first snapshot (percent: no decimals
    are needed), buys on the token bought, sells on the token sold, arbitrages on theirs."""
    figure, axes = new_figure()
    markers: dict[str, list[tuple[int, float]]] = {"buy": [], "sell": [], "arb": []}
    drawn = False
    for curve in curves:
        traded = sorted({t for f in curve.fills for t in (f.token_in, f.token_out)})
        for token in traded:
            line = _relative_prices(curve.points, token)
            if not line:
                continue
            drawn = True
            shown = thin(line)
            axes.plot(
                [b for b, _ in shown],
                [v for _, v in shown],
                linewidth=1.0,
                label=f"{_name(token, names)} ({curve.label})",
                gid=f"price-{token.lower()}-run-{curve.run_id}",
            )
            blocks: dict[str, list[int]] = {"buy": [], "sell": [], "arb": []}
            for fill in curve.fills:
                if fill.block_number is None or token not in (fill.token_in, fill.token_out):
                    continue
                if fill.token_in == fill.token_out:
                    kind = "arb"
                else:
                    kind = "buy" if fill.token_out == token else "sell"
                blocks[kind].append(fill.block_number)
            for kind, at in blocks.items():
                markers[kind] += trade_points(line, at)
    if not drawn:
        return None
    style = {"buy": ("^", "#1a7f37"), "sell": ("v", "#cf222e"), "arb": ("D", "#0969da")}
    for kind, points in markers.items():
        marker, color = style[kind]
        axes.plot(
            [b for b, _ in points],
            [v for _, v in points],
            linestyle="none",
            marker=marker,
            markersize=7,
            color=color,
            label=f"{kind}s ({len(points)})",
            gid=f"{kind}-markers",
        )
    axes.set_xlabel("block")
    axes.set_ylabel("price vs the run's start (%)")
    block_axis(axes.xaxis)
    axes.legend(loc="best", fontsize="small")
    return svg_of(figure)


def _relative_prices(points: Sequence[EquitySnapshot], token: str) -> list[tuple[int, float]]:
    first: float | None = None
    line = []
    for i, point in enumerate(points):
        price = point.unit_prices_usd.get(token)
        if price is None or price <= 0:
            continue
        first = first or price
        line.append((_block(point, i), (price / first - 1.0) * 100.0))
    return line


def _drawdown(curve: RunCurves) -> list[tuple[int, float]]:
    """Percent below the running peak of the run's equity, per snapshot (0 or negative)."""
    peak = 0.0
    line = []
    for block, equity in curve.equity:
        peak = max(peak, equity)
        line.append((block, (equity / peak - 1.0) * 100.0 if peak > 0 else 0.0))
    return line


def _drawdown_chart(curves: list[RunCurves]) -> str:
    figure, axes = new_figure(2.8)
    for curve in curves:
        line = thin(_drawdown(curve))
        axes.plot(
            [b for b, _ in line],
            [d for _, d in line],
            label=curve.label,
            color="#cf222e" if len(curves) == 1 else None,
            gid=_gid("drawdown", curve.run_id),
        )
    axes.set_xlabel("block")
    axes.set_ylabel("% below peak")
    block_axis(axes.xaxis)
    if len(curves) > 1:
        axes.legend(loc="best", fontsize="small")
    return svg_of(figure)


def _period_table(curves: list[RunCurves]) -> TableSection:
    rows = []
    for curve in curves:
        stamps = [int(p.taken_at.timestamp()) for p in curve.points]
        blocks = [_block(p, i) for i, p in enumerate(curve.points)]
        trades = []
        for fill in curve.fills:
            # a fill is dated by the last snapshot at or before its block (the run's first
            # when it is earlier or has no block); snapshot blocks ascend within a run
            block = fill.block_number
            at_or_before = 0 if block is None else bisect.bisect_right(blocks, block) - 1
            at = stamps[max(0, at_or_before)]
            trades.append((at, fill.profit_usd))
        for row in per_period(stamps, [p.equity_usd for p in curve.points], trades, "day"):
            rows.append(
                (
                    curve.label,
                    row.start,
                    str(row.trades),
                    signed_usd(row.realised_pnl),
                    f"${row.end_equity:,.2f}",
                    percent(row.period_return),
                )
            )
    return TableSection(
        "per day (UTC)",
        ("run", "day", "trades", "realised PnL", "equity at close", "return"),
        rows,
        note="Return: the day's last equity over the previous day's (the run's first for its "
        "first day).",
        element_id="periods",
    )


def _risk_sections(risk: JournalRisk) -> list[Section]:
    sections: list[Section] = []
    var = risk.var
    note = (
        "One day. Daily returns: each UTC day's last equity snapshot over the previous day's, "
        "within a run. Historical: the k = ceil(n x (1 - confidence)) worst days (VaR the k-th, "
        "CVaR their mean); normal: VaR = z x sigma - mu, CVaR = sigma x pdf(z) / (1 - "
        f"confidence) - mu. At least {var.minimum} daily returns are needed."
    )
    if var.message is not None:
        sections.append(NoteSection("value at risk (VaR, CVaR)", [var.message, note]))
    else:
        sections.append(
            TableSection(
                "value at risk (VaR, CVaR)",
                ("confidence", "historical VaR", "historical CVaR", "normal VaR", "normal CVaR"),
                [
                    (
                        f"{level.confidence:.0%}",
                        f"{percent(level.historical_var, signed=False)} "
                        f"({money(level.historical_var_usd, 'USD')})",
                        f"{percent(level.historical_cvar, signed=False)} "
                        f"({money(level.historical_cvar_usd, 'USD')})",
                        f"{percent(level.parametric_var, signed=False)} "
                        f"({money(level.parametric_var_usd, 'USD')})",
                        f"{percent(level.parametric_cvar, signed=False)} "
                        f"({money(level.parametric_cvar_usd, 'USD')})",
                    )
                    for level in var.levels
                ],
                note=f"{var.observations} daily returns. {note}",
                element_id="var",
            )
        )
    mc = risk.monte_carlo
    mc_note = (
        f"{mc.paths:,} paths, each {mc.horizon_trades} trade returns drawn with replacement from "
        f"the realised ones (seed {mc.seed}) and compounded. A trade's return: its realised USD "
        f"over the equity just before it. At least {mc.minimum} trades are needed."
    )
    if mc.message is not None:
        sections.append(NoteSection("Monte Carlo", [mc.message, mc_note]))
    else:
        rows = [
            (f"{p}th percentile", percent(v), money(mc.percentiles_usd.get(p), "USD", signed=True))
            for p, v in mc.percentiles.items()
        ]
        rows.append(("probability of a loss", percent(mc.probability_of_loss, 1, False), ""))
        sections.append(
            TableSection("Monte Carlo", ("", "return", "PnL"), rows, mc_note, "monte-carlo")
        )
    return sections


def render_journal_html(
    summary: JournalSummary, risk: JournalRisk, token_names: Mapping[str, str] | None = None
) -> str:
    """The report page of what ``summary`` holds; ``token_names`` maps addresses to symbols."""
    names = dict(token_names or {})
    curves = run_curves(summary)
    metrics = [
        ("trades", str(len(summary.fills))),
        ("predicted PnL", signed_usd(summary.predicted_profit_usd)),
        ("realised PnL", signed_usd(summary.realised_profit_usd)),
    ]
    sections: list[Section] = []
    if len(curves) == 1:
        only = curves[0]
        start, end = only.points[0].equity_usd, only.points[-1].equity_usd
        metrics += [
            ("equity", f"${start:,.2f} → ${end:,.2f}"),
            ("return", percent(end / start - 1.0 if start > 0 else None)),
        ]
        if only.hold:
            hold_start, hold_end = only.hold[0][1], only.hold[-1][1]
            held = hold_end / hold_start - 1.0 if hold_start > 0 else None
            metrics.append(("holding the start", percent(held)))
    if curves:
        worst = min(min((d for _, d in _drawdown(c)), default=0.0) for c in curves)
        metrics.append(("max drawdown", percent(-worst / 100.0, signed=False)))
        no_prices = [c.label for c in curves if not c.hold]
        chart_note = "Triangles: the trades, at their block on the equity line."
        if no_prices:
            chart_note += (
                f" No benchmark for {', '.join(no_prices)}: its snapshots recorded no prices "
                "(journaled before migration 0005)."
            )
        sections.append(Chart("equity and trades", _equity_chart(curves), chart_note))
        prices = _price_chart(curves, names)
        if prices is not None:
            sections.append(
                Chart(
                    "prices and trades",
                    prices,
                    "Each traded token's USD price relative to the run's first snapshot. Up "
                    "triangles: a buy of that token; down: a sale; diamonds: an arbitrage "
                    "cycle through it.",
                )
            )
        sections.append(Chart("drawdown", _drawdown_chart(curves)))
        sections.append(_period_table(curves))
    else:
        sections.append(NoteSection("equity", ["No equity snapshot journaled for this scope."]))
    sections += _risk_sections(risk)
    sections.append(
        TableSection(
            "trades",
            ("run", "block", "intent", "tx", "predicted", "realised", "status"),
            [
                (
                    str(summary.fill_runs.get(f.intent_id) or "-"),
                    "-" if f.block_number is None else str(f.block_number),
                    f.intent_id,
                    f.tx_hash or "paper",
                    "-" if f.predicted_profit_usd is None else signed_usd(f.predicted_profit_usd),
                    "-" if f.profit_usd is None else signed_usd(f.profit_usd),
                    # reorged-out fills are listed, and counted in no total
                    FILL_FINALITY_LABELS.get(f.finality, f.finality),
                )
                for f in [*summary.fills, *summary.voided]
            ],
            element_id="trades",
        )
    )
    run = summary.run
    subtitle = summary.scope if run is None else (
        f"run {run.id}: {run.mode} on {run.chain_name} (chain id {run.chain_id}), started "
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC"
    )  # fmt: skip
    return render(Page("defi-agent report", subtitle, metrics, sections))
