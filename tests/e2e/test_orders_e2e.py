"""Conditional orders on the devnet: orders placed with the real `defi-agent order add` command
(in a thread, on the journal of the running agent) and fired by the running agent (fork mode)
when a dev account's big swap moves the uniswap_v2 WETH/USDC price through them.

- a stop-loss fires at the tick of the block whose swap crossed its price;
- a trailing stop follows the peak up and fires on the retrace;
- an OCO pair: the take-profit fills and its stop-loss sibling is cancelled (and never fires);
- a Telegram /order from the operator's chat is placed and fires; a stranger's is ignored;
- a trailing stop placed, the agent stopped and started again: the peak it had seen is kept and
  the order fires on the retrace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.cli import main
from agent.store.journal import Journal
from agent.types import ConditionalOrder, Fill
from tests.e2e.harness import (
    AGENT_ACCOUNT,
    OPERATOR_CHAT_ID,
    STRANGER_CHAT_ID,
    TELEGRAM_TOKEN,
    AgentRun,
    Chain,
    running_agent,
    wait_for,
    write_config,
)
from tests.e2e.test_grid_e2e import DEX, move_price, v2_price
from tests.fakes.telegram_fake import TelegramFake

ORDER_WETH = "0.5"
ORDER_WEI = 5 * 10**17


def orders_tree(chain: Chain, workdir: Path, **options: Any) -> dict[str, Any]:
    return chain.tree(
        workdir,
        **options,
        risk={"max_token_exposure_usd": 1e9, "max_total_exposure_usd": 1e9},
        # the swings open arbitrage gaps: only the orders may trade here
        strategies={"arbitrage": {"enabled": False}, "orders": {"enabled": True, "dex": DEX}},
    )


async def cli(config: Path, *args: str) -> None:
    """`defi-agent order ...` as an operator types it, beside the running agent."""
    code = await asyncio.to_thread(main, ["order", *args, "--config", str(config)])
    assert code == 0, args


async def order_rows(agent: AgentRun) -> dict[int, ConditionalOrder]:
    return {o.id: o for o in await agent.parts.journal.list_orders()}


async def swing(chain: Chain, agent: AgentRun, target: float) -> tuple[int, list[Fill]]:
    """Move the price (one mined block) and let the agent tick on that block: (block, fills)."""
    before = len(agent.parts.engine.report.fills)
    swap = await move_price(chain, target)
    report = await agent.tick(swap.block)
    fills = agent.parts.engine.report.fills[before:]
    assert len(fills) == report.started, agent.parts.engine.report.failures
    return swap.block, fills


def sold_weth(chain: Chain, fill: Fill) -> None:
    tokens = chain.deployment.tokens
    assert (fill.token_in, fill.token_out) == (tokens["WETH"].address, tokens["USDC"].address)
    assert fill.amount_in == ORDER_WEI
    assert fill.amount_out == fill.predicted_amount_out > 0 and fill.tx_hash is not None


async def test_stop_loss_fires_on_the_block_that_crossed_its_price(
    chain: Chain, workdir: Path
) -> None:
    config = workdir / "agent.toml"
    cfg = write_config(config, orders_tree(chain, workdir), {})
    weth_before = await chain.balance("WETH", AGENT_ACCOUNT)
    usdc_before = await chain.balance("USDC", AGENT_ACCOUNT)
    async with running_agent(cfg) as agent:
        await agent.tick()
        await cli(config, "add", "stop-loss", "sell", ORDER_WETH, "WETH/USDC", "--price", "2950")
        assert (await agent.tick()).started == 0  # picked up, price ~3,000: nothing to do
        assert (await swing(chain, agent, 2_970))[1] == []  # above the stop
        crossed, (fill,) = await swing(chain, agent, 2_930)
        sold_weth(chain, fill)
        # fired by the tick of the crossing block itself; on the automining devnet its exact
        # approval is mined in the next block and the swap in the one after
        assert fill.opportunity_id is not None
        assert fill.opportunity_id.startswith(f"order1-b{crossed}-")
        assert fill.block_number is not None and crossed < fill.block_number <= crossed + 2
        (row,) = (await order_rows(agent)).values()
        assert row.status == "filled" and str(fill.amount_out) in row.reason
        assert (await swing(chain, agent, 2_900))[1] == []  # filled orders never fire again
    assert await chain.balance("WETH", AGENT_ACCOUNT) == weth_before - ORDER_WEI
    assert await chain.balance("USDC", AGENT_ACCOUNT) == usdc_before + fill.amount_out


async def test_trailing_stop_follows_the_peak_then_fires_on_the_retrace(
    chain: Chain, workdir: Path
) -> None:
    config = workdir / "agent.toml"
    cfg = write_config(config, orders_tree(chain, workdir), {})
    await cli(config, "add", "trailing-stop", "sell", ORDER_WETH, "WETH/USDC", "--trail", "40")
    async with running_agent(cfg) as agent:
        for target in (3_060, 3_120, 3_090):  # up, up, 30 under the peak: holds
            assert (await swing(chain, agent, target))[1] == []
        (row,) = (await order_rows(agent)).values()
        assert row.status == "pending" and row.peak is not None and abs(row.peak - 3_120) < 5
        _, (fill,) = await swing(chain, agent, 3_070)  # 50 under the peak: sells
        sold_weth(chain, fill)
        assert (await order_rows(agent))[row.id].status == "filled"


async def test_oco_fill_cancels_its_sibling(chain: Chain, workdir: Path) -> None:
    config = workdir / "agent.toml"
    cfg = write_config(config, orders_tree(chain, workdir), {})
    await cli(config, "add", "take-profit", "sell", ORDER_WETH, "WETH/USDC", "--price", "3050")
    await cli(
        config,
        *("add", "stop-loss", "sell", ORDER_WETH, "WETH/USDC", "--price", "2950"),
        *("--oco-with", "1"),
    )
    async with running_agent(cfg) as agent:
        _, (fill,) = await swing(chain, agent, 3_080)
        sold_weth(chain, fill)
        rows = await order_rows(agent)
        assert (rows[1].status, rows[2].status) == ("filled", "cancelled")
        assert rows[2].reason == "OCO: order #1 filled"
        assert (await swing(chain, agent, 2_900))[1] == []  # the cancelled stop never fires


async def test_an_order_survives_a_restart(chain: Chain, workdir: Path) -> None:
    config = workdir / "agent.toml"
    cfg = write_config(config, orders_tree(chain, workdir), {})
    async with running_agent(cfg) as agent:
        await agent.tick()
        await cli(config, "add", "trailing-stop", "sell", ORDER_WETH, "WETH/USDC", "--trail", "2%")
        assert (await swing(chain, agent, 3_150))[1] == []  # the peak rises with the price
    journal: Journal = agent.parts.journal
    (row,) = await journal.list_orders()
    assert row.status == "pending" and row.peak is not None and abs(row.peak - 3_150) < 5

    # stopped: the price eases off the peak (1.6%: not yet at the stop)
    await move_price(chain, 3_100)
    async with running_agent(cfg) as agent:
        assert (await agent.tick()).started == 0
        price, _, _ = await v2_price(chain)
        assert price > row.peak * 0.98
        # 3,080 is 2.2% under the 3,150 peak seen before the restart (a peak reset to the
        # price at restart, 3,100, would be only 0.6% away)
        _, (fill,) = await swing(chain, agent, 3_080)
        sold_weth(chain, fill)
        assert (await order_rows(agent))[row.id].status == "filled"


async def test_telegram_order_from_the_operator_fires_and_a_strangers_is_ignored(
    chain: Chain, workdir: Path, telegram: TelegramFake
) -> None:
    tree = orders_tree(chain, workdir, telegram_url=telegram.base_url)
    cfg = write_config(workdir / "agent.toml", tree, {"TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN})
    async with running_agent(cfg, telegram_control=True) as agent:
        await agent.tick()
        telegram.push_command(STRANGER_CHAT_ID, "/order add stop-loss sell 0.5 WETH/USDC 2990")
        telegram.push_command(OPERATOR_CHAT_ID, "/order add stop-loss sell 0.5 WETH/USDC 2950")

        def replies() -> list[str]:
            return [m.visible_text for m in telegram.messages_to(OPERATOR_CHAT_ID)]

        await wait_for(lambda: any(r.startswith("placed #") for r in replies()))
        assert telegram.messages_to(STRANGER_CHAT_ID) == []
        (row,) = (await order_rows(agent)).values()  # only the operator's
        assert row.trigger_price is not None and int(row.trigger_price) == 2_950
        assert (await swing(chain, agent, 2_970))[1] == []  # the stranger's 2,990 is not there
        _, (fill,) = await swing(chain, agent, 2_930)
        sold_weth(chain, fill)
        telegram.push_command(OPERATOR_CHAT_ID, "/order list")
        await wait_for(lambda: "no active orders" in replies())
