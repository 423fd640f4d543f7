"""Self-contained HTML reports: one file, inline CSS, charts as inline SVG drawn by matplotlib.

No script, no font, no stylesheet and no image is fetched from anywhere: a report opens offline
and can be mailed as it is. Every series and marker group of a chart carries an ``id`` (the SVG
``<g id=...>`` matplotlib writes for an artist's ``gid``), so a test or a browser can find the
price line, the buy and sell markers, the benchmark and a grid's range exit:

======================  ===========================================================
``price-series``        the price (backtest: candle closes)
``buy-markers``         one marker per buy, on the price line
``sell-markers``        one marker per sell
``range-exit``          where a grid stopped because the price left its range
``equity-series``       the strategy's equity (``equity-run-<id>`` per run in ``report``)
``benchmark-series``    buy-and-hold (backtest) / holding the starting balances (report)
``trade-markers``       trades on the equity line
``drawdown-series``     drawdown below the running peak, percent
``*-close-up``          backtest: price, buy, sell and range-exit ids of the close-up
                        of the trading span, when the trades crowd into a corner
======================  ===========================================================
"""

from __future__ import annotations

import html
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)  # the XML declaration and DOCTYPE
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
# ids matplotlib makes up (line2d_3, patch_7, clip paths p0a1b..., markers m0a1b...): several
# charts in one page would repeat them, so each chart's get a prefix of its own
_AUTO_ID = re.compile(r'id="((?:[a-z][a-z0-9.]*_\d+)|(?:[mp][0-9a-f]{10}))"')

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .4rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}.sub{color:#57606a;margin:0 0 1rem}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.5rem}
.metric{border:1px solid #d0d7de;border-radius:6px;padding:.4rem .6rem}
.metric .label{color:#57606a;font-size:.8rem}.metric .value{font-size:1.1rem;
font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%;font-size:.9rem;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}
.note{color:#57606a;font-size:.9rem}.warn{color:#9a6700}
.chart svg{width:100%;height:auto}.scroll{overflow-x:auto}
"""


@dataclass(frozen=True, slots=True)
class Chart:
    """A chart section: ``svg`` is the inline ``<svg>`` element."""

    title: str
    svg: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class TableSection:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str | None = None
    element_id: str | None = None


@dataclass(frozen=True, slots=True)
class NoteSection:
    title: str
    lines: Sequence[str]
    warning: bool = False


Section = Chart | TableSection | NoteSection


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    subtitle: str
    metrics: Sequence[tuple[str, str]] = ()  # label, formatted value (units included)
    sections: Sequence[Section] = field(default_factory=tuple)


def render(page: Page) -> str:
    """The page as one HTML document (UTF-8, no external resource)."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(page.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(page.title)}</h1>",
        f'<p class="sub">{esc(page.subtitle)}</p>',
    ]
    if page.metrics:
        out.append('<section id="metrics" class="metrics">')
        for label, value in page.metrics:
            out.append(
                f'<div class="metric"><div class="label">{esc(label)}</div>'
                f'<div class="value">{esc(value)}</div></div>'
            )
        out.append("</section>")
    for section in page.sections:
        out.append(f"<h2>{esc(section.title)}</h2>")
        if isinstance(section, Chart):
            out.append(f'<div class="chart">{section.svg}</div>')
            if section.note:
                out.append(f'<p class="note">{esc(section.note)}</p>')
        elif isinstance(section, TableSection):
            if section.note:
                out.append(f'<p class="note">{esc(section.note)}</p>')
            table_id = f' id="{esc(section.element_id)}"' if section.element_id else ""
            out.append(f'<div class="scroll"><table{table_id}><thead><tr>')
            out.extend(f"<th>{esc(c)}</th>" for c in section.columns)
            out.append("</tr></thead><tbody>")
            for row in section.rows:
                out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table></div>")
        else:
            css = "note warn" if section.warning else "note"
            out.extend(f'<p class="{css}">{esc(line)}</p>' for line in section.lines)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f'<p class="note">generated by defi-agent, {generated}</p></body></html>')
    return "\n".join(out) + "\n"


def new_figure(height_in: float = 3.6) -> tuple[Figure, Any]:
    """A figure on the Agg canvas (no display, no pyplot state) and its axes."""
    figure = Figure(figsize=(10, height_in), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(alpha=0.3)
    return figure, axes


def money_axis(axis: Any) -> None:
    """Amounts with thousands separators on ``axis`` (21,500,000 rather than 21500000 or an
    offset), cents only where a tick has them (100.5), for equity axes."""
    axis.set_major_formatter(FuncFormatter(_amount_tick))


def _amount_tick(value: float, _position: int | None) -> str:
    text = f"{value:,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def block_axis(axis: Any) -> None:
    """Ticks on whole blocks only: a half block does not exist."""
    axis.set_major_locator(MaxNLocator(integer=True))


def svg_of(figure: Figure) -> str:
    """``figure`` as an inline ``<svg>`` element; text stays text in the page's own sans-serif
    font (nothing to fetch), and matplotlib's made-up ids are made unique to this chart."""
    figure.tight_layout()
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _METADATA.sub("", _PROLOG.sub("", buffer.getvalue(), count=1), count=1)
    prefix = f"c{uuid.uuid4().hex[:8]}-"
    for auto in set(_AUTO_ID.findall(text)):
        name = re.escape(auto)
        text = re.sub(rf'(?<=id="){name}(?=")|(?<=#){name}(?=[")])', prefix + auto, text)
    return text


MAX_LINE_POINTS = 4_000


def thin(
    line: Sequence[tuple[int, float]], max_points: int = MAX_LINE_POINTS
) -> list[tuple[int, float]]:
    """At most about ``max_points`` points of ``line`` (ordered by x): per bucket its lowest
    and highest point in x order, so a spike stays visible and the SVG stays small."""
    if len(line) <= max_points:
        return list(line)
    buckets = max(1, max_points // 2)
    size = len(line) / buckets
    thinned: list[tuple[int, float]] = []
    for k in range(buckets):
        chunk = line[int(k * size) : int((k + 1) * size)]
        if not chunk:
            continue
        low = min(range(len(chunk)), key=lambda i: chunk[i][1])
        high = max(range(len(chunk)), key=lambda i: chunk[i][1])
        thinned += [chunk[i] for i in sorted({low, high})]
    return thinned


def percent(value: float | None, digits: int = 2, signed: bool = True) -> str:
    """``+1.23 %`` from a fraction (0.0123); ``-`` for None. A return too small for
    ``digits`` gets the decimals it needs (up to 6: ``+0.0064 %``), so a run that made money
    never shows as ``+0.00 %``."""
    if value is None:
        return "-"
    while value != 0 and round(value * 100, digits) == 0 and digits < 6:
        digits += 1
    shown = round(value * 100, digits) + 0.0  # + 0.0: no "-0.00 %" for a tiny loss
    return f"{shown:+,.{digits}f} %" if signed else f"{shown:,.{digits}f} %"


def money(value: float | None, unit: str, digits: int = 2, signed: bool = False) -> str:
    """``12,345.67 USDC``; ``-`` for None."""
    if value is None:
        return "-"
    return f"{value:+,.{digits}f} {unit}" if signed else f"{value:,.{digits}f} {unit}"
