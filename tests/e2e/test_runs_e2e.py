"""What `defi-agent status` and `defi-agent report` tell an operator after real runs on the devnet:
the realised USD of every fill is the figure its Telegram/Discord alert showed; a run whose
config refuses everything says why, with counts; a paper run and a fork run on one journal are
reported apart. The commands run as an operator runs them: the console script, in a process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    OPERATOR_CHAT_ID,
    TELEGRAM_TOKEN,
    Chain,
    running_agent,
    wait_for,
    write_config,
)
from tests.fakes.discord_fake import DiscordWebhookFake
from tests.fakes.telegram_fake import TelegramFake
from tests.unit.html_reports import assert_self_contained, read_report

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = REPO_ROOT / ".venv" / "bin" / "defi-agent"


async def defi_agent(*args: str, cwd: Path, environ: Mapping[str, str] | None = None) -> str:
    """Run the CLI in a process (without blocking the agent running in this one); its stdout."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    env.update(environ or {})
    command = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "agent"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def report_json(
    config: Path, workdir: Path, *options: str, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    out = workdir / ("report" + "".join(options).replace("-", "_"))
    printed = await defi_agent(
        "report", "--config", str(config), "--out", str(out), *options, cwd=workdir,
        environ=environ,
    )  # fmt: skip
    return json.loads((out / "report.json").read_text()), printed


def rows(table: str) -> dict[str, str]:
    """The label -> value rows of a two-column table as `status` prints it."""
    found: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)]
        if len(cells) >= 4 and cells[1]:
            found[cells[1]] = cells[2]
    return found


def paper_variant(tree: dict[str, Any]) -> dict[str, Any]:
    """The same agent in paper mode: no key, a virtual portfolio in the journal."""
    paper = json.loads(json.dumps(tree))
    execution = paper["execution"]
    execution["mode"] = "paper"
    del execution["arb_executor"]
    execution["paper_balances"] = {"WETH": "100", "USDC": "300000"}
    return paper


async def test_report_shows_for_every_fill_the_realised_usd_its_alert_showed(
    chain: Chain, telegram: TelegramFake, discord: DiscordWebhookFake, workdir: Path
) -> None:
    tree = chain.tree(workdir, telegram_url=telegram.base_url, discord_url=discord.webhook_url)
    environ = {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "DISCORD_WEBHOOK_URL": discord.webhook_url}
    config = workdir / "agent.toml"
    cfg = write_config(config, tree, environ)

    async with running_agent(cfg) as agent:
        for dex in ("sushiswap", "uniswap_v2"):  # two gaps, one each way
            gap = await chain.open_gap(dex, usd=60_000.0)
            assert (await agent.tick(gap.block)).started == 1
        fills = agent.parts.engine.report.fills
        assert len(fills) == 2, agent.parts.engine.report.failures
        run_id = agent.parts.run_id

        def alerted() -> dict[str, str]:
            """Trade id -> the realised figure of its Discord alert."""
            fields = [
                {f["name"]: f["value"] for f in embed.get("fields", [])}
                for body in discord.delivered
                for embed in body.get("embeds", [])
                if str(embed.get("title", "")).startswith("Trade filled")
            ]
            return {f["trade"]: f["realised"] for f in fields}

        await wait_for(
            lambda: (
                len(alerted()) == 2
                and sum(
                    "Trade filled" in m.visible_text for m in telegram.messages_to(OPERATOR_CHAT_ID)
                )
                == 2
            )
        )
        # while it runs, `status` says so, with its last block
        status = rows(
            await defi_agent("status", "--config", str(config), cwd=workdir, environ=environ)
        )
        assert status["agent"].startswith(f"running (run {run_id},"), status
        assert status["last block"].startswith(f"{gap.block} ("), status

    body, printed = await report_json(config, workdir, environ=environ)
    assert body["run"]["id"] == run_id and body["run"]["mode"] == "fork"
    trades = {t["intent"]: t for t in body["trades"]}
    assert set(trades) == {f.intent_id for f in fills}
    for trade_id, realised in alerted().items():
        trade = trades[trade_id]
        assert trade["realised_profit_usd"] > 0
        assert f"{trade['realised_profit_usd']:+,.2f} USD" == realised  # the alert's figure
        assert realised in printed  # and the report's table shows it, predicted beside it
        assert f"{trade['predicted_profit_usd']:+,.2f} USD" in printed
        telegram_text = next(
            m.visible_text
            for m in telegram.messages_to(OPERATOR_CHAT_ID)
            if trade_id in m.visible_text and "Trade filled" in m.visible_text
        )
        assert realised in telegram_text
        assert trade["opportunity"] and trade_id.startswith(trade["opportunity"])
    assert body["realised_profit_usd"] == sum(t["realised_profit_usd"] for t in trades.values())
    # report.html: both trades on the equity line, which the run's starting balances (valued at
    # the prices each block's snapshot recorded) are drawn against; arbitrages on the prices
    page = read_report(workdir / "report" / "report.html")
    assert_self_contained(page)
    assert page.markers["trade-markers"] == 2 and page.markers["arb-markers"] == 2
    assert page.paths[f"equity-run-{run_id}"] >= 1 and page.paths[f"benchmark-run-{run_id}"] >= 1
    assert "too little data for VaR/CVaR: 1 daily return" in page.text

    status = rows(await defi_agent("status", "--config", str(config), cwd=workdir, environ=environ))
    assert status["agent"].startswith(f"not running (run {run_id} stopped"), status


async def test_status_lists_why_a_run_refused_everything(chain: Chain, workdir: Path) -> None:
    """A config whose token allowlist leaves out the traded tokens refuses every arbitrage
    with `token_not_allowed`: `status` says so, with the count, instead of a silent agent that
    never trades. (Strategies size within `max_trade_usd` now, so the default limits trade.)"""
    refuse_all = {"token_allowlist": ["DAI"]}
    config = workdir / "agent.toml"
    cfg = write_config(config, chain.tree(workdir, risk=refuse_all), {})

    refused: dict[str, int] = {}
    async with running_agent(cfg) as agent:
        for dex in ("sushiswap", "uniswap_v2", "sushiswap"):
            gap = await chain.open_gap(dex, usd=60_000.0)
            tick = await agent.tick(gap.block)
            assert tick.started == 0
            for reason, count in tick.rejected.items():
                refused[reason] = refused.get(reason, 0) + count
    assert refused.get("token_not_allowed", 0) >= 3, refused

    status = rows(await defi_agent("status", "--config", str(config), cwd=workdir))
    by_count = sorted(refused.items(), key=lambda item: (-item[1], item[0]))
    expected = ", ".join(f"{reason}={n}" for reason, n in by_count)
    assert status["refusals, last 100 blocks"] == expected, status
    assert status["refusals, whole run"] == expected, status
    assert status["fills"].startswith("0 ·"), status


async def test_a_paper_run_and_a_fork_run_on_one_journal_are_reported_apart(
    chain: Chain, workdir: Path
) -> None:
    tree = chain.tree(workdir)
    fork_config = workdir / "agent.toml"
    paper_config = workdir / "paper.toml"
    fork_cfg = write_config(fork_config, tree, {})
    paper_cfg = write_config(paper_config, paper_variant(tree), {})

    async with running_agent(paper_cfg, mode="paper") as paper:
        gap = await chain.open_gap("sushiswap", usd=60_000.0)
        await paper.tick(gap.block)
        (paper_fill,) = paper.parts.engine.report.fills
        paper_run = paper.parts.run_id
    # paper traded nothing on chain: the gap is still open for the fork run
    async with running_agent(fork_cfg) as fork:
        await fork.tick()
        (fork_fill,) = fork.parts.engine.report.fills
        fork_run = fork.parts.run_id
    assert paper_run is not None and fork_run is not None and fork_run > paper_run

    latest, _ = await report_json(fork_config, workdir)
    assert (latest["run"]["id"], latest["mode"]) == (fork_run, "fork")
    assert [t["intent"] for t in latest["trades"]] == [fork_fill.intent_id]
    assert latest["trades"][0]["realised_profit_usd"] == fork_fill.profit_usd

    # the same journal through either config: runs are the journal's, not the config's
    earlier, _ = await report_json(fork_config, workdir, "--run", str(paper_run))
    assert (earlier["run"]["id"], earlier["mode"]) == (paper_run, "paper")
    assert [t["intent"] for t in earlier["trades"]] == [paper_fill.intent_id]
    assert earlier["trades"][0]["realised_profit_usd"] == paper_fill.profit_usd

    both, printed = await report_json(paper_config, workdir, "--all")
    assert both["runs"] == [paper_run, fork_run]
    assert {(t["run"], t["intent"]) for t in both["trades"]} == {
        (paper_run, paper_fill.intent_id),
        (fork_run, fork_fill.intent_id),
    }
    assert "equity chart" in printed

    status = rows(await defi_agent("status", "--config", str(paper_config), cwd=workdir))
    # the mode that ran last (fork), not the paper config's
    assert status["run"].startswith(f"{fork_run} · fork on devnet"), status
    status = rows(
        await defi_agent(
            "status", "--config", str(fork_config), "--run", str(paper_run), cwd=workdir
        )
    )
    assert status["run"].startswith(f"{paper_run} · paper on devnet"), status
