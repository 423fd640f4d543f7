"""`report` (risk figures, report.html), `trades`, `rejections` and `balance` on a journal written
through the Journal API: a 30-day paper run with arbitrages and grid trades, then a short fork run.
The commands run as an operator runs them: the console script, in a process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from agent.analytics.risk import value_at_risk
from agent.store.db import init_db, session_factory
from agent.store.journal import Journal
from agent.store.models import EquitySnapshotRow
from agent.types import Fill, Intent
from tests.unit.html_reports import assert_self_contained, read_report
from tests.unit.test_cli import init_for_local_devnet, run

WETH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
DAYS = 30
DAY0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
# WETH in USD per day: a wave between 2,940 and 3,060
WETH_USD = [3_000.0 + 30.0 * ((i * 7) % 5 - 2) for i in range(DAYS)]
# run 1 keeps 10 WETH and gains 5 USDC a day from its arbitrages
EQUITY = [10 * WETH_USD[i] + 20_000 + 5 * i for i in range(DAYS)]
ARB_DAYS = list(range(0, 20, 2))  # 10 arbitrages: days 0, 2, ..., 18
GRID_DAYS = (21, 25)  # a grid buy of WETH (day 21) and a sale (day 25)
TX_HASH = "0x" + "ab" * 32


def block_of(day: int) -> int:
    return 100 + 10 * day


def intent(intent_id: str, strategy: str, token_in: str, token_out: str) -> Intent:
    return Intent(
        id=intent_id,
        strategy=strategy,
        kind="arb" if token_in == token_out else "swap",
        route=(),
        token_in=token_in,
        token_out=token_out,
        amount_in=1_000 * 10**6,
        min_amount_out=1,
        predicted_amount_out=1_001 * 10**6,
        predicted_profit=10**6,
        predicted_profit_usd=1.0,
        deadline=2_000_000_000,
    )


def fill(record: Intent, block: int, profit_usd: float, tx_hash: str | None) -> Fill:
    return Fill(
        intent_id=record.id,
        mode="paper" if tx_hash is None else "fork",
        tx_hash=tx_hash,
        token_in=record.token_in,
        token_out=record.token_out,
        amount_in=record.amount_in,
        amount_out=record.predicted_amount_out,
        profit=int(profit_usd * 10**6),
        predicted_amount_in=record.amount_in,
        predicted_amount_out=record.predicted_amount_out,
        predicted_profit=record.predicted_profit,
        block_number=block,
        predicted_profit_usd=1.0,
        profit_usd=profit_usd,
    )


async def write_journal(url: str) -> None:
    engine = await init_db(url)
    journal = Journal(session_factory(engine))
    try:
        await journal.seed_paper_balances({WETH: 10 * 10**18, USDC: 20_000 * 10**6})
        first = await journal.start_run("paper", "devnet", 31337, "a" * 64)
        for day in range(DAYS):
            await journal.snapshot_equity(
                "paper",
                EQUITY[day],
                {WETH: 10 * 10**18, USDC: (20_000 + 5 * day) * 10**6},
                block_of(day),
                {WETH: WETH_USD[day] / 1e18, USDC: 1 / 1e6},
            )
        for n, day in enumerate(ARB_DAYS):
            arb = intent(f"arb-{n}", "arbitrage", USDC, USDC)
            await journal.record_intent(arb, "paper")
            # every third arbitrage realised less than predicted
            await journal.record_fill(fill(arb, block_of(day) + 5, 0.5 if n % 3 else -0.25, None))
        for name, day, token_in, token_out in (
            ("grid-buy", GRID_DAYS[0], USDC, WETH),
            ("grid-sell", GRID_DAYS[1], WETH, USDC),
        ):
            swap = intent(name, "grid", token_in, token_out)
            await journal.record_intent(swap, "paper")
            await journal.record_fill(fill(swap, block_of(day) + 5, 2.0, None))
        for n, (reason, day) in enumerate(
            [("min_profit", d) for d in (3, 9, 15, 27, 28)] + [("gas_too_high", d) for d in (1, 29)]
        ):
            opportunity = f"opp-{n}"
            await journal.record_opportunity(
                opportunity, "arbitrage", "arb", block_number=block_of(day)
            )
            await journal.record_rejection("arbitrage", reason, f"case {n}", opportunity)
        await journal.heartbeat(first, block_of(DAYS - 1))
        await journal.finish_run(first, "stopped")

        second = await journal.start_run("fork", "devnet", 31337, "b" * 64)
        for block, equity in ((10, 50_000.0), (11, 50_003.0)):
            await journal.snapshot_equity(
                "fork", equity, {USDC: int(equity * 10**6)}, block, {USDC: 1 / 1e6, WETH: 3e-15}
            )
        arb = intent("fork-arb", "arbitrage", USDC, USDC)
        await journal.record_intent(arb, "fork")
        await journal.record_signed_tx(
            TX_HASH, b"\x02", 31337, "0x" + "11" * 20, 0, "arb", 300_000, 10**9, 10**8,
            "0x" + "22" * 20, intent_id=arb.id,
        )  # fmt: skip
        await journal.mark_sent(TX_HASH)
        await journal.mark_mined(TX_HASH, 11, 200_000, 10**9)
        await journal.record_fill(fill(arb, 11, 3.0, TX_HASH))
        await journal.heartbeat(second, 11)
        await journal.finish_run(second, "stopped")

        # the snapshots' wall clock: run 1 one a day at noon, run 2 within one minute
        async with session_factory(engine).begin() as session:
            for day in range(DAYS):
                await session.execute(
                    update(EquitySnapshotRow)
                    .where(EquitySnapshotRow.run_id == first)
                    .where(EquitySnapshotRow.block_number == block_of(day))
                    .values(taken_at=DAY0 + timedelta(days=day))
                )
            for minute, block in enumerate((10, 11)):
                await session.execute(
                    update(EquitySnapshotRow)
                    .where(EquitySnapshotRow.run_id == second)
                    .where(EquitySnapshotRow.block_number == block)
                    .values(taken_at=DAY0 + timedelta(days=DAYS, minutes=minute))
                )
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("journal")
    config = init_for_local_devnet(directory)
    url = f"sqlite+aiosqlite:///{directory / 'journal.db'}"
    text = config.read_text().replace(
        'url = "sqlite+aiosqlite:///./data/agent.db"', f'url = "{url}"'
    )
    assert url in text
    config.write_text(text.replace('mode = "fork"', 'mode = "paper"', 1))
    asyncio.run(write_journal(url))
    yield directory


def cli(workdir: Path, *args: str) -> str:
    result = run(*args, "--config", str(workdir / "agent.toml"), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def cli_json(workdir: Path, *args: str) -> Any:
    return json.loads(cli(workdir, *args, "--json"))


def test_report_of_a_30_day_run_has_var_cvar_and_a_monte_carlo(workdir: Path) -> None:
    out = workdir / "report-1"
    printed = cli(workdir, "report", "--run", "1", "--out", str(out), "--mc-seed", "7")
    body = json.loads((out / "report.json").read_text())
    var = body["risk"]["var"]
    # one return per UTC day: the first day's close over the run's first point (0), then
    # each day's equity over the day before's
    returns = [0.0] + [EQUITY[i] / EQUITY[i - 1] - 1 for i in range(1, DAYS)]
    expected = value_at_risk(returns, EQUITY[-1])
    assert var["observations"] == DAYS and var["message"] is None
    assert var["levels"] == [
        pytest.approx(level) for level in expected.to_dict()["levels"]
    ]  # fmt: skip
    worst = min(returns)
    assert var["levels"][1]["historical_var"] == pytest.approx(-worst)  # 99 %: the worst day
    mc = body["risk"]["monte_carlo"]
    assert mc["trades"] == len(ARB_DAYS) + len(GRID_DAYS) and mc["paths"] == 10_000
    assert mc["seed"] == 7 and 0.0 <= mc["probability_of_loss"] <= 1.0
    assert "1-day VaR 95%" in printed and "probability of a loss" in printed
    # the same seed, the same Monte Carlo
    again = workdir / "report-1b"
    cli(workdir, "report", "--run", "1", "--out", str(again), "--mc-seed", "7")
    assert json.loads((again / "report.json").read_text())["risk"]["monte_carlo"] == mc


def test_report_html_marks_the_trades_and_the_hold_benchmark(workdir: Path) -> None:
    out = workdir / "report-html"
    cli(workdir, "report", "--run", "1", "--out", str(out))
    page = read_report(out / "report.html")
    assert_self_contained(page)
    trades = len(ARB_DAYS) + len(GRID_DAYS)
    assert page.markers["trade-markers"] == trades
    assert page.paths["equity-run-1"] >= 1 and page.paths["benchmark-run-1"] >= 1
    # on the prices: arbitrages on USDC; each swap buys one token and sells the other (the
    # grid's buy: WETH up, USDC down; its sale: WETH down, USDC up)
    assert page.markers["arb-markers"] == len(ARB_DAYS)
    assert page.markers["buy-markers"] == 2 and page.markers["sell-markers"] == 2
    # holding the starting balances (10 WETH + 20,000 USDC) at the last prices
    held = (10 * WETH_USD[-1] + 20_000) / (10 * WETH_USD[0] + 20_000) - 1
    assert f"holding the start {held * 100:+,.2f} %" in page.text
    assert len(page.table_rows["var"]) == 2 and page.table_rows["var"][0][0] == "95%"
    assert page.table_rows["monte-carlo"][-1][0] == "probability of a loss"
    assert sum(int(row[2]) for row in page.table_rows["periods"]) == trades
    assert len(page.table_rows["trades"]) == trades


def test_report_of_a_short_run_says_there_is_too_little_data(workdir: Path) -> None:
    out = workdir / "report-2"
    printed = cli(workdir, "report", "--out", str(out))  # the latest run: the fork run
    risk = json.loads((out / "report.json").read_text())["risk"]
    assert risk["var"]["levels"] == [] and risk["var"]["observations"] == 1
    assert "too little data for VaR/CVaR: 1 daily return, at least 20 needed" in printed
    assert "too little data for Monte Carlo: 1 trade with a realised USD profit" in printed
    page = read_report(out / "report.html")
    assert "too little data for VaR/CVaR" in page.text and page.markers["trade-markers"] == 1


def test_trades_show_predicted_vs_realised_and_the_transaction(workdir: Path) -> None:
    latest = cli_json(workdir, "trades")
    assert latest["run"] == 2 and [t["tx_hash"] for t in latest["trades"]] == [TX_HASH]
    assert latest["trades"][0]["realised_minus_predicted_usd"] == pytest.approx(2.0)
    everything = cli_json(workdir, "trades", "--all", "--limit", "0")
    assert everything["total"] == len(ARB_DAYS) + len(GRID_DAYS) + 1
    grid = cli_json(workdir, "trades", "--all", "--strategy", "grid")
    assert [t["intent_id"] for t in grid["trades"]] == ["grid-buy", "grid-sell"]
    assert {t["run_id"] for t in grid["trades"]} == {1}
    last3 = cli_json(workdir, "trades", "--run", "1", "--limit", "3")
    assert last3["total"] == 12 and [t["intent_id"] for t in last3["trades"]] == [
        "arb-9", "grid-buy", "grid-sell",
    ]  # fmt: skip
    table = cli(workdir, "trades", "--run", "1", "--strategy", "arbitrage")
    assert table.count("paper") == len(ARB_DAYS)
    assert "-0.25 USD" in table and "-1.25 USD" in table  # realised, and realised - predicted


def test_rejections_by_reason_with_counts_and_recent_examples(workdir: Path) -> None:
    whole = cli_json(workdir, "rejections", "--run", "1", "--examples", "2")
    assert [(r["reason"], r["count"]) for r in whole["reasons"]] == [
        ("min_profit", 5),
        ("gas_too_high", 2),
    ]
    examples = whole["reasons"][0]["examples"]
    assert [e["block_number"] for e in examples] == [block_of(28), block_of(27)]
    assert examples[0]["detail"] == "case 4"
    # the last 25 blocks up to the run's last (block 390): blocks 366-390, days 27-29
    recent = cli_json(workdir, "rejections", "--run", "1", "--since-blocks", "25")
    assert recent["since_block"] == block_of(DAYS - 1) - 24
    assert [(r["reason"], r["count"]) for r in recent["reasons"]] == [
        ("min_profit", 2),
        ("gas_too_high", 1),
    ]
    table = cli(workdir, "rejections", "--run", "1")
    assert "min_profit" in table and "7 refusals" in table
    none = cli(workdir, "rejections")  # the fork run refused nothing
    assert "no refusals in this scope" in none


def test_balance_in_paper_mode_is_the_journals_portfolio_in_usd(workdir: Path) -> None:
    sheet = cli_json(workdir, "balance")
    assert sheet["source"] == "journal (paper portfolio)"
    held = {row["token"]: row for row in sheet["balances"]}
    assert held[WETH]["amount"] == str(10 * 10**18) and held[USDC]["amount"] == str(20_000 * 10**6)
    # symbols and decimals from the deployment file, without the chain
    assert (held[WETH]["symbol"], held[WETH]["decimals"]) == ("WETH", 18)
    # priced at the latest snapshot that recorded prices (run 2's: WETH 3,000, USDC 1)
    assert sheet["priced_at_block"] == 11
    assert held[WETH]["usd"] == pytest.approx(30_000.0)
    assert sheet["total_usd"] == pytest.approx(50_000.0)
    table = cli(workdir, "balance")
    assert "$50,000.00" in table and "10.000000" in table and "$30,000.00" in table


def test_journal_commands_reject_bad_run_choices(workdir: Path) -> None:
    for command in ("trades", "rejections"):
        result = run(command, "--config", str(workdir / "agent.toml"), "--run", "9", cwd=workdir)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().endswith("error: --run 9: not in the journal (runs 1-2)")


def test_trades_sit_on_the_drawn_equity_line() -> None:
    from agent.app.report import trade_points

    line = [(10, 100.0), (20, 200.0), (30, 150.0)]
    # block 15: halfway between 100 and 200; block 30: on a point; before/after: the ends
    assert trade_points(line, [15, 30, 5, 40]) == [
        (15, 150.0),
        (30, 150.0),
        (5, 100.0),
        (40, 150.0),
    ]
    assert trade_points([], [1]) == []


def test_long_lines_are_thinned_but_keep_their_extremes() -> None:
    from agent.analytics.html import thin

    line = [(block, float(block % 97)) for block in range(100_000)]
    line[51_234] = (51_234, 10_000.0)  # one spike
    drawn = thin(line, max_points=1_000)
    assert len(drawn) <= 1_000
    assert (51_234, 10_000.0) in drawn and drawn == sorted(drawn)
    assert thin(line[:10]) == line[:10]
