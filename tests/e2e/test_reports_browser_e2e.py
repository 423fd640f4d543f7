"""The HTML reports of `defi-agent report` (after a real fork run with two fills on the devnet)
and `defi-agent backtest` (a grid that leaves its range, walk-forward on) opened as an operator
opens them: a file:// page in Debian's headless chromium. The trade markers and the buy-and-hold
benchmark are drawn, on screen and visible, one marker per trade; the page asks the network for
nothing but itself. Screenshots are kept under test-artifacts/reports/.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright

from agent.backtest.data import generate_ohlcv
from tests.e2e.harness import Chain, running_agent, write_config
from tests.e2e.test_console_browser_e2e import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_runs_e2e import defi_agent

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reports"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`apt-get install chromium`, or `make setup` as root)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


class OpenedReport:
    """A report open in a page, with every request the page made."""

    def __init__(self, page: Page, url: str, requests: list[str]) -> None:
        self.page = page
        self.url = url
        self.requests = requests

    async def visible_markers(self, group_id: str) -> int:
        """How many markers of the series are drawn with a non-empty box on the page."""
        markers = self.page.locator(f"g[id='{group_id}'] use")
        count = await markers.count()
        assert count > 0, f"no markers in #{group_id}"
        for index in range(count):
            marker = markers.nth(index)
            assert await marker.is_visible(), f"#{group_id} marker {index} is not visible"
            box = await marker.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0, (group_id, box)
        return count

    async def assert_line_drawn(self, group_id: str, segments: int = 1) -> None:
        """The series is a stroked path across the plot with at least ``segments`` segments,
        not an empty or single-point 'd'. (A flat line has a box of zero height, which
        Playwright's is_visible calls hidden: its stroke and its width are checked instead.)"""
        path = self.page.locator(f"g[id='{group_id}'] path").first
        drawn = await path.evaluate(
            """line => {
                const style = getComputedStyle(line);
                const box = line.getBoundingClientRect();
                const plot = line.ownerSVGElement.getBoundingClientRect();
                return {
                    shown: style.display !== "none" && style.visibility !== "hidden"
                        && style.stroke !== "none" && parseFloat(style.strokeWidth) > 0
                        && parseFloat(style.opacity) > 0,
                    width: box.width,
                    inside: box.left >= plot.left && box.right <= plot.right
                        && box.top >= plot.top && box.bottom <= plot.bottom,
                };
            }"""
        )
        assert drawn["shown"] and drawn["inside"] and drawn["width"] > 10, (group_id, drawn)
        d = await path.get_attribute("d") or ""
        assert d.startswith("M") and d.count("L") >= segments, f"#{group_id}: {d[:80]!r}"

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")


async def open_report(browser: Browser, report: Path) -> OpenedReport:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    url = report.as_uri()  # workdir is absolute
    await page.goto(url, wait_until="load")
    return OpenedReport(page, url, requests)


async def test_the_run_report_draws_both_fills_and_the_benchmark_in_the_browser(
    chain: Chain, workdir: Path, browser: Browser
) -> None:
    config = workdir / "agent.toml"
    cfg = write_config(config, chain.tree(workdir), {})
    async with running_agent(cfg) as agent:
        for dex in ("sushiswap", "uniswap_v2"):  # two gaps, one each way
            gap = await chain.open_gap(dex, usd=60_000.0)
            assert (await agent.tick(gap.block)).started == 1
        fills = agent.parts.engine.report.fills
        assert len(fills) == 2, agent.parts.engine.report.failures
        run_id = agent.parts.run_id

    out = workdir / "report"
    await defi_agent("report", "--config", str(config), "--out", str(out), cwd=workdir)
    trades = json.loads((out / "report.json").read_text())["trades"]
    assert len(trades) == 2

    report = await open_report(browser, out / "report.html")
    await report.screenshot("run-report")
    assert await report.visible_markers("trade-markers") == len(trades)
    assert await report.visible_markers("arb-markers") == len(trades)
    await report.assert_line_drawn(f"equity-run-{run_id}")
    await report.assert_line_drawn(f"benchmark-run-{run_id}")
    for table in ("metrics", "trades"):
        assert await report.page.locator(f"#{table}").is_visible(), table
    assert report.requests == [report.url]


async def test_the_backtest_report_draws_trades_benchmark_and_range_exit_in_the_browser(
    workdir: Path, browser: Browser
) -> None:
    # ~2 weeks of minutes, volatile enough to cross a tight grid often and leave its range
    data = workdir / "candles.parquet"
    generate_ohlcv(20_000, seed=11, annual_vol=1.2, half_life_days=3.0).write(data)
    params = workdir / "params.toml"
    params.write_text(
        "[strategies.grid]\nenabled = false\nlower_price = 2900\nupper_price = 3100\n"
        'levels = 11\norder_size = 0.5\non_range_exit = "stop"\n\n'
        "[backtest]\ninitial_quote = 50000\n"
    )
    out = workdir / "backtest"
    await defi_agent(
        "backtest", "--strategy", "grid", "--data", str(data), "--params", str(params),
        "--out", str(out), "--no-progress", "--walk-forward", "2", cwd=workdir,
    )  # fmt: skip
    result = json.loads((out / "report.json").read_text())
    assert result["details"]["range_exit"]["candle"] > 0
    with (out / "trades.csv").open(newline="", encoding="utf-8") as handle:
        sides = [row["side"] for row in csv.DictReader(handle)]
    buys, sells = sides.count("buy"), sides.count("sell")
    assert buys > 0 and sells > 0 and buys + sells == result["metrics"]["trade_count"]

    report = await open_report(browser, out / "report.html")
    await report.screenshot("backtest-report")
    # the grid stops within hours of two weeks: the trades also get a close-up of their own
    for suffix in ("", "-close-up"):
        assert await report.visible_markers(f"buy-markers{suffix}") == buys
        assert await report.visible_markers(f"sell-markers{suffix}") == sells
        assert await report.visible_markers(f"range-exit{suffix}") == 1
    await report.assert_line_drawn("price-series-close-up", segments=10)
    for series in ("price-series", "benchmark-series", "equity-series", "drawdown-series"):
        await report.assert_line_drawn(series, segments=10)
    for table in ("walk-forward", "periods"):
        assert await report.page.locator(f"#{table}").is_visible(), table
    assert report.requests == [report.url]
