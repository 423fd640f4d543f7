"""The operator console in a real headless browser (Debian's chromium, driven by Playwright)
against the real agent on the devnet: the dashboard loads with the token from its URL
fragment, shows a trade soon after its fill, its pause button pauses the agent (the persisted
control, the API's control action and /health agree), and requests without the token are
refused. Screenshots are kept under test-artifacts/console/.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.harness import Chain, running_agent, wait_for, write_config

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_installed() -> bool:
    return CHROMIUM.is_file()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not chromium_installed():
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def test_dashboard_shows_a_fill_live_and_its_pause_button_pauses_the_agent(
    chain: Chain, workdir: Path, browser: Browser
) -> None:
    metrics_port = free_port()
    arbitrage = {
        "enabled": True,
        "dexes": ["uniswap_v2", "sushiswap"],
        "min_profit_usd": 1.0,
        "max_input_usd": 200_000.0,
    }
    # A grid far below the price: it never trades here, its levels are drawn on the chart.
    grid = {
        "enabled": True,
        "pair": "WETH/USDC",
        "dex": "uniswap_v2",
        "lower_price": 1000,
        "upper_price": 2000,
        "levels": 5,
        "order_size": 0.1,
    }
    tree = chain.tree(workdir, strategies={"arbitrage": arbitrage, "grid": grid})
    tree["metrics"] = {"enabled": True, "port": metrics_port}
    tree["console"] = {"enabled": True, "port": 0}
    cfg = write_config(workdir / "agent.toml", tree, {})

    async with running_agent(cfg) as agent, aiohttp.ClientSession() as http:
        console = agent.parts.console
        assert console is not None
        # The token was generated into the data directory, readable by its owner only.
        token_file = workdir / "data" / "console.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert console.dashboard_url() == f"{console.url}#token={token}"

        # Without the token (or with a wrong one) nothing is served but the empty page shell.
        for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
            async with http.get(console.url + "api/status", headers=headers) as response:
                assert response.status == 401
            async with http.post(console.url + "api/control/pause", headers=headers) as response:
                assert response.status == 401
        async with http.get(console.url + "api/events?ticket=forged.abcd") as response:
            assert response.status == 401
        async with http.get(console.url + "openapi.json") as response:
            schema = await response.json()
        assert {"/api/trades", "/api/control/kill", "/api/events"} <= set(schema["paths"])
        assert not agent.parts.risk.paused

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(console.dashboard_url())
        await page.wait_for_selector('#state[data-state="trading"]', timeout=15_000)
        # The token left the address bar (it stays in the page's localStorage).
        assert "token" not in page.url
        await page.wait_for_selector('#live[data-live="yes"]', timeout=15_000)

        await agent.tick()  # a calm block first: the dashboard follows the ticks
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        report = await agent.tick(gap.block)
        assert report.started == 1
        fills = agent.parts.engine.report.fills
        assert len(fills) == 1, agent.parts.engine.report.failures
        fill = fills[0]
        assert fill.tx_hash is not None

        # The live stream brings the trade onto the page without a reload.
        row = page.locator(f'#trades tr[data-trade-id="{fill.intent_id}"][data-status="filled"]')
        await row.wait_for(timeout=10_000)
        assert await row.locator("td.hash").get_attribute("data-tx-hash") == fill.tx_hash
        assert fill.profit_usd is not None
        assert f"{fill.profit_usd:,.2f}" in await row.inner_text()
        await page.wait_for_selector("#pools tbody tr", timeout=10_000)
        await page.wait_for_selector('#holders li[data-role="executor"]', timeout=10_000)
        # The executor's balances as the API reports them are the chain's.
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(console.url + "api/balances", headers=auth) as response:
            balances = await response.json()
        trades_url = console.url + "api/trades"
        for query, expected in (
            ("?strategy=arbitrage&status=filled", [fill.intent_id]),
            ("?strategy=grid", []),
            ("?status=reverted", []),
            (f"?run={agent.parts.run_id}", [fill.intent_id]),
        ):
            async with http.get(trades_url + query, headers=auth) as response:
                assert [t["id"] for t in await response.json()] == expected, query
        async with http.get(console.url + "api/strategies", headers=auth) as response:
            fills_by = {s["name"]: s["fills"] for s in await response.json()}
        assert fills_by == {"arbitrage": 1, "grid": 0}
        # The WETH chart marks the arbitrage's fill and draws the grid's levels.
        async with http.get(console.url + "api/prices?token=WETH", headers=auth) as response:
            weth = await response.json()
        assert [(f["block"], f["side"]) for f in weth["fills"]] == [(fill.block_number, "arb")]
        assert [(g["strategy"], g["levels"]) for g in weth["grids"]] == [
            ("grid", [1000.0, 1250.0, 1500.0, 1750.0, 2000.0])
        ]
        assert len(weth["points"]) >= 2
        await page.wait_for_selector('#prices-card[data-fills="1"][data-grids="1"]', timeout=10_000)
        executor = next(h for h in balances["by_holder"] if h["role"] == "executor")
        assert executor["holder"] == chain.arb_executor
        for symbol in ("USDC", "WETH"):
            on_chain = await chain.balance(symbol, chain.arb_executor)
            assert int(executor["balances"][symbol]) == on_chain
        # This run's realised PnL beside the prediction.
        summary = page.locator(
            "#pnl-summary", has_text=f"run #{agent.parts.run_id} (fork): 1 fills"
        )
        await summary.wait_for(timeout=10_000)
        assert f"realised ${fill.profit_usd:,.2f}" in await summary.inner_text()
        await screenshot(page, "dashboard-after-fill")

        await page.click("#pause")
        await page.wait_for_selector('#state[data-state="paused"]', timeout=10_000)
        await wait_for(lambda: agent.parts.risk.paused)
        # The pause is persisted (the kill-switch file), journaled as a control action by the
        # API and reported by /health.
        assert (workdir / "KILL").read_text().strip() == "paused from the dashboard"
        (action,) = await agent.parts.journal.list_control_actions()
        assert (action.source, action.actor, action.action, action.accepted) == (
            "api",
            "127.0.0.1",
            "pause",
            True,
        )
        assert action.argument == "paused from the dashboard"
        async with http.get(f"http://127.0.0.1:{metrics_port}/health") as response:
            health = await response.json()
        assert health["paused"] is True
        alerts_item = page.locator('#alerts li[data-kind="control_action"]')
        await alerts_item.first.wait_for(timeout=10_000)
        assert "pause by api" in await alerts_item.first.inner_text()

        # Paused, the next gap is refused for that reason, and the page says so.
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        paused = await agent.tick(gap.block)
        assert paused.started == 0 and set(paused.rejected) == {"paused"}
        await page.locator("#refusals td", has_text="paused").first.wait_for(timeout=10_000)
        async with http.get(console.url + "api/opportunities", headers=auth) as response:
            why = await response.json()
        assert why["totals"]["paused"] == paused.rejected["paused"]
        assert why["run_totals"] == {"paused": paused.rejected["paused"]}
        await screenshot(page, "dashboard-paused")

        # On a phone the page fits the screen's width (no sideways scrolling).
        phone = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        await phone.goto(console.dashboard_url())
        await phone.wait_for_selector('#state[data-state="paused"]', timeout=15_000)
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await screenshot(phone, "dashboard-phone")


async def test_a_busy_console_port_is_a_clear_configuration_error(
    chain: Chain, workdir: Path
) -> None:
    from agent.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        tree = chain.tree(workdir)
        tree["console"] = {"enabled": True, "port": port, "token": "s3cret-console-token-xyz"}
        cfg = write_config(workdir / "agent.toml", tree, {})
        with pytest.raises(ConfigError) as refused:
            async with running_agent(cfg):
                pass
    message = str(refused.value)
    assert f"console.port: 127.0.0.1:{port} is already in use" in message
    assert "s3cret" not in message


async def test_demo_prints_the_dashboard_url_and_the_dashboard_shows_its_trades_live(
    browser: Browser, tmp_path: Path
) -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "demo",
        "--blocks",
        "200",
        "--out",
        str(tmp_path / "demo"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert demo.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        url = None
        async with asyncio.timeout(90):
            while url is None:
                line = (await demo.stdout.readline()).decode()
                if not line:
                    stderr = await demo.stderr.read() if demo.stderr else b""
                    raise AssertionError(f"demo ended without a dashboard URL: {stderr[-2000:]!r}")
                match = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/#token=\S+)", line)
                url = match.group(1) if match else None
        drain = asyncio.create_task(demo.stdout.read())  # keep the pipe from filling up
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(url)
        await page.wait_for_selector('#live[data-live="yes"]', timeout=30_000)
        # The simulated traders open gaps; the agent's fills appear without a reload.
        await page.locator('#trades tr[data-status="filled"]').first.wait_for(timeout=120_000)
        await screenshot(page, "demo-dashboard")
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)  # the demo's own graceful stop
            try:
                async with asyncio.timeout(60):
                    await demo.wait()
            except TimeoutError:
                demo.kill()
                await demo.wait()
    if drain is not None:
        drain.cancel()
    assert demo.returncode == 0


async def test_kill_needs_its_confirmation_then_halts_and_stops_the_agent(
    chain: Chain, workdir: Path
) -> None:
    tree = chain.tree(workdir)
    tree["console"] = {"enabled": True, "port": 0, "token": "${DEFI_AGENT_CONSOLE_TOKEN}"}
    token = "operator-chosen-console-token"
    cfg = write_config(workdir / "agent.toml", tree, {"DEFI_AGENT_CONSOLE_TOKEN": token})
    headers = {"Authorization": f"Bearer {token}"}

    async with (
        running_agent(cfg, telegram_control=True) as agent,
        aiohttp.ClientSession() as http,
    ):
        console = agent.parts.console
        assert console is not None
        assert not (workdir / "data" / "console.token").exists()  # the configured one is used
        kill = console.url + "api/control/kill"
        async with http.get(kill, headers=headers) as response:
            assert response.status == 405  # controls are POST only
        async with http.post(kill, headers=headers, json={}) as response:
            assert response.status == 422
        async with http.post(kill, headers=headers, json={"confirm": "yes"}) as response:
            assert response.status == 400
        assert not agent.parts.risk.paused and not agent.stop.is_set()
        refused = await agent.parts.journal.list_control_actions()
        assert [(a.source, a.action, a.accepted) for a in refused] == [("api", "kill", False)]

        async with http.post(kill, headers=headers, json={"confirm": "kill"}) as response:
            assert response.status == 200
        assert agent.parts.risk.paused
        journaled = await agent.parts.journal.list_control_actions()
        assert [(a.action, a.accepted) for a in journaled] == [("kill", False), ("kill", True)]
        await wait_for(agent.stop.is_set)
        assert agent.task is not None
        async with asyncio.timeout(30):
            await agent.task  # the run ends on its own
    assert "killed from api" in (workdir / "KILL").read_text()


async def test_in_paper_mode_the_console_shows_the_virtual_portfolio_and_no_wallet(
    chain: Chain, workdir: Path
) -> None:
    tree = chain.tree(workdir)
    execution = tree["execution"]
    execution["mode"] = "paper"
    del execution["arb_executor"]
    execution["paper_balances"] = {"USDC": "250000", "WETH": "40"}
    tree["console"] = {"enabled": True, "port": 0, "token": "paper-console-token-0123"}
    cfg = write_config(workdir / "agent.toml", tree, {})
    headers = {"Authorization": "Bearer paper-console-token-0123"}

    async with running_agent(cfg, mode="paper") as agent, aiohttp.ClientSession() as http:
        console = agent.parts.console
        assert console is not None
        await agent.tick()
        async with http.get(console.url + "api/status", headers=headers) as response:
            status = await response.json()
        assert (status["mode"], status["wallet"], status["state"]) == ("paper", None, "trading")
        async with http.get(console.url + "api/balances", headers=headers) as response:
            balances = await response.json()
        held = {b["symbol"]: int(b["amount"]) for b in balances["balances"]}
        assert held == {"USDC": 250_000 * 10**6, "WETH": 40 * 10**18}
        assert balances["by_holder"] == []  # no wallet, no executor: the journal's portfolio
