"""Whale-follow on the devnet: a watched wallet buys WETH with 150,000 USDC through Router02; the
running agent (fork mode, a dev-account signer) follows with exactly a tenth of it, mined within
the configured delay; a small trade by the same wallet is ignored; the position is closed back
into USDC when its time limit is reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.devnet.node import DEV_ACCOUNTS
from agent.devnet.traders import SwapResult, swap_v2
from agent.store.models import IntentStatus
from tests.e2e.harness import AGENT_ACCOUNT, Chain, running_agent, write_config

WHALE = DEV_ACCOUNTS[8][0]
WHALE_USDC = 150_000
MAX_DELAY_BLOCKS = 2
MAX_HOLD_BLOCKS = 3
SIZE_FRACTION_PPM = 100_000  # size_fraction 0.1


def whale_tree(chain: Chain, workdir: Path) -> dict[str, Any]:
    return chain.tree(
        workdir,
        # the funded wallet already holds millions in every token: exposure is not the point
        risk={"max_token_exposure_usd": 1e9, "max_total_exposure_usd": 1e9},
        strategies={
            "arbitrage": {"enabled": False},  # the whale's swap opens a gap; not ours to take
            "whale_follow": {
                "enabled": True,
                "wallets": [WHALE],
                "size_fraction": SIZE_FRACTION_PPM / 1_000_000,
                "max_trade_usd": 1_000_000.0,
                "min_whale_trade_usd": 50_000.0,
                "max_delay_blocks": MAX_DELAY_BLOCKS,
                "token_allowlist": ["WETH"],
                "sentiment_gate": False,
                "take_profit_pct": 50.0,
                "stop_loss_pct": 50.0,
                "max_hold_blocks": MAX_HOLD_BLOCKS,
            },
        },
    )


async def whale_buys_weth(chain: Chain, usdc: int) -> SwapResult:
    a = chain.deployment.addresses
    return await swap_v2(
        chain.rpc,
        dex="uniswap_v2",
        router=a["uniswap_v2.router"],
        trader=WHALE,
        path=[a["USDC"], a["WETH"]],
        amount_in=usdc * 10**6,
    )


async def test_a_whale_buy_is_followed_at_scale_within_the_delay_and_exited_on_time(
    chain: Chain, workdir: Path
) -> None:
    cfg = write_config(workdir / "agent.toml", whale_tree(chain, workdir), {})
    usdc, weth = chain.deployment.tokens["USDC"].address, chain.deployment.tokens["WETH"].address
    usdc_before = await chain.balance("USDC", AGENT_ACCOUNT)

    async with running_agent(cfg) as agent:
        assert (await agent.tick()).started == 0  # no whale yet

        small = await whale_buys_weth(chain, 5_000)  # below min_whale_trade_usd
        assert (await agent.tick(small.block)).opportunities == 0
        seen = agent.parts.engine.last_snapshot
        assert seen is not None  # the watcher saw it; the strategy let it pass
        assert [t.tx_hash for t in seen.whale_trades] == [small.tx_hash]

        whale = await whale_buys_weth(chain, WHALE_USDC)
        report = await agent.tick(whale.block)
        assert report.started == 1, (report.rejected, agent.parts.engine.report.failures)
        (follow,) = agent.parts.engine.report.fills
        assert follow.block_number is not None and follow.tx_hash is not None
        assert follow.block_number - whale.block <= MAX_DELAY_BLOCKS
        # a tenth of what the whale paid, to the unit, into the token it bought
        assert (follow.token_in, follow.token_out) == (usdc, weth)
        assert follow.amount_in == whale.amount_in * SIZE_FRACTION_PPM // 1_000_000
        assert follow.amount_in == WHALE_USDC * 10**6 // 10
        assert follow.amount_out == follow.predicted_amount_out > 0
        record = await agent.parts.journal.get_intent(follow.intent_id)
        assert record.status == IntentStatus.FILLED and record.intent.strategy == "whale_follow"
        assert whale.tx_hash[:12] in follow.intent_id  # the follow names the trade it copies

        # Held for MAX_HOLD_BLOCKS blocks, the position is sold back into USDC.
        await chain.devnet.mine(MAX_HOLD_BLOCKS)
        report = await agent.tick()
        assert report.started == 1, (report.rejected, agent.parts.engine.report.failures)
        (_, exit_fill) = agent.parts.engine.report.fills
        assert exit_fill.intent_id.startswith("whale-exit-")
        assert (exit_fill.token_in, exit_fill.token_out) == (weth, usdc)
        assert exit_fill.amount_in == follow.amount_out
        assert exit_fill.amount_out == exit_fill.predicted_amount_out > 0

    assert await chain.balance("USDC", AGENT_ACCOUNT) == (
        usdc_before - follow.amount_in + exit_fill.amount_out
    )
    assert len(await agent.parts.journal.list_fills(mode="fork")) == 2
