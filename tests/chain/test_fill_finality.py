"""Fill finality on the devnet, with real reorgs (``anvil_reorg``): a fill stays pending until
``execution.confirmations`` and then becomes final; a reorg that re-includes the trade in
another block moves the fill there with the amounts the new receipt shows (or voids it as
reverted when it reverts there); a trade back in the mempool waits, then moves with the block
that mines it; a reorg that takes the trade out of the chain voids the fill (journal, totals,
trades view) and the next trade takes the freed nonce."""

# ruff: noqa: F811  (the `env` fixture comes from test_execution; test parameters name it)

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_abi import encode

from agent.app.journal_views import list_trades
from agent.app.report import read_journal
from agent.devnet import Devnet
from agent.execution import SEL_V2_SWAP_EXACT_TOKENS, erc20_balance
from agent.execution.finality import (
    FINAL,
    MOVED,
    REORGED_OUT,
    REQUEUED,
    REVERTED,
    FinalityWatch,
)
from agent.store import IntentStatus, TxStatus
from agent.types import FILL_FINAL, FILL_PENDING, FILL_REORGED, Fill, Intent
from tests.chain.test_execution import (  # noqa: F401  (env: the fixture, by name)
    FAR_DEADLINE,
    Env,
    env,
    make_intent,
    predict,
    v2_hop,
)
from tests.conftest import devnet_copy, load_abi

pytestmark = pytest.mark.chain


@pytest.fixture
async def devnet(devnet: Devnet) -> AsyncIterator[Devnet]:
    """Each test reorgs a devnet of its own (see ``devnet_copy``)."""
    async with devnet_copy(devnet) as own:
        yield own


CONFIRMATIONS = 3


async def head(env: Env) -> int:
    return int(await env.w3.eth.block_number)


async def swap_usdc_for_weth(env: Env, usdc: int = 2_000) -> tuple[Intent, Fill]:
    """A V2 swap of ``usdc`` whole USDC for WETH on uniswap_v2 (approve, then swap: two blocks),
    executed with ``CONFIRMATIONS``."""
    route = (v2_hop(env, "uniswap_v2", "USDC", "WETH"),)
    amount_in = usdc * 10**6
    intent = make_intent("swap", route, amount_in, await predict(env.w3, route, amount_in))
    outcome = await env.executor(confirmations=CONFIRMATIONS).execute(intent)
    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None
    return intent, outcome.fill


class Whale:
    """A dev account trading USDC/WETH on uniswap_v2 inside a reorg's replacement blocks."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.address = env.devnet.accounts[2][0]
        self.router = env.devnet.addresses["uniswap_v2.router"]

    async def approve(self, symbol: str, amount: int) -> None:
        token = self.env.w3.eth.contract(address=self.env.token(symbol), abi=load_abi("ERC20"))
        approval = await token.functions.approve(self.router, amount).transact(
            {"from": self.address}
        )
        assert (await self.env.w3.eth.wait_for_transaction_receipt(approval))["status"] == 1

    async def reorg_with_swap_first(
        self, depth: int, sell: str, buy: str, amount: int, ours: bytes, our_block: int
    ) -> None:
        """``anvil_reorg`` of ``depth`` blocks whose replacements hold the whale's swap of
        ``amount`` ``sell`` for ``buy`` in the first block and our signed transaction
        ``ours`` in replacement block ``our_block`` (0-based)."""
        data = SEL_V2_SWAP_EXACT_TOKENS + encode(
            ["uint256", "uint256", "address[]", "address", "uint256"],
            [amount, 0, [self.env.token(sell), self.env.token(buy)], self.address, FAR_DEADLINE],
        )
        # the gas is given: Anvil's own estimate for it is made against the chain before the
        # reorg
        whale_tx = {
            "from": self.address,
            "to": self.router,
            "data": "0x" + data.hex(),
            "gas": hex(400_000),
        }
        await self.env.devnet.call(
            "anvil_reorg", [depth, [[whale_tx, 0], ["0x" + ours.hex(), our_block]]]
        )


async def trade_tx(env: Env, intent: Intent, purpose: str = "swap") -> Any:
    (tx,) = [t for t in await env.journal.txs_for_intent(intent.id) if t.purpose == purpose]
    return tx


async def test_a_fill_stays_pending_until_its_confirmations_then_is_final(env: Env) -> None:
    intent, fill = await swap_usdc_for_weth(env)
    block = await env.w3.eth.get_block(fill.block_number or 0)
    assert fill.finality == FILL_PENDING
    assert fill.block_hash == "0x" + bytes(block["hash"]).hex()
    assert await env.journal.get_fill(intent.id) == fill
    watch = FinalityWatch(env.sender, env.journal, CONFIRMATIONS)

    # the receipt's block alone, then one block on top: 1 and 2 confirmations of 3
    for confirmations in (1, 2):
        assert await head(env) == (fill.block_number or 0) + confirmations - 1
        assert await watch.check(await head(env)) == []
        assert [f.intent_id for f in await env.journal.unconfirmed_fills()] == [intent.id]
        (row,) = (await list_trades(env.journal, all_runs=True)).trades
        assert row.status == "pending confirmation"
        await env.devnet.mine(1)

    (change,) = await watch.check(await head(env))
    assert (change.outcome, change.intent_id) == (FINAL, intent.id)
    journaled = await env.journal.get_fill(intent.id)
    assert journaled is not None and journaled.finality == FILL_FINAL
    assert await env.journal.unconfirmed_fills() == []
    (row,) = (await list_trades(env.journal, all_runs=True)).trades
    assert row.status == "final"
    await env.devnet.mine(1)
    assert await watch.check(await head(env)) == []  # final fills are not looked at again


async def test_a_reorg_that_reincludes_the_trade_moves_the_fill_to_its_new_block(
    env: Env,
) -> None:
    whale = Whale(env)
    await whale.approve("WETH", 20 * 10**18)
    weth_before = await erc20_balance(env.w3, env.token("WETH"), env.wallet)
    intent, fill = await swap_usdc_for_weth(env)
    swap = await trade_tx(env, intent)
    await env.devnet.mine(1)

    # The swap's block and the one after are replaced: a whale's WETH sale lands first, our
    # very transaction (its signed bytes) one block later, at a price the sale moved.
    await whale.reorg_with_swap_first(2, "WETH", "USDC", 20 * 10**18, swap.raw_tx, 1)
    receipt = await env.sender.get_receipt(swap.tx_hash)
    assert receipt is not None and receipt.block_number == (fill.block_number or 0) + 1

    watch = FinalityWatch(env.sender, env.journal, CONFIRMATIONS)
    (change,) = await watch.check(await head(env))

    assert change.outcome == MOVED
    moved = change.after
    assert moved is not None
    assert (moved.block_number, moved.block_hash) == (receipt.block_number, receipt.block_hash)
    assert moved.finality == FILL_PENDING
    # the amounts are the new receipt's: the whale's sale made WETH cheaper for us
    weth_got = await erc20_balance(env.w3, env.token("WETH"), env.wallet) - weth_before
    assert moved.amount_out == weth_got > fill.amount_out
    assert moved.amount_in == fill.amount_in
    assert await env.journal.get_fill(intent.id) == moved
    journaled_swap = await env.journal.get_tx(swap.tx_hash)
    assert (journaled_swap.status, journaled_swap.block_number) == (
        TxStatus.MINED,
        receipt.block_number,
    )
    assert (await env.journal.get_intent(intent.id)).status == IntentStatus.FILLED

    await env.devnet.mine(CONFIRMATIONS - 1)
    (final,) = await watch.check(await head(env))
    assert final.outcome == FINAL
    journaled = await env.journal.get_fill(intent.id)
    assert journaled is not None
    assert (journaled.finality, journaled.amount_out) == (FILL_FINAL, weth_got)


async def test_a_fill_reorged_out_is_voided_and_the_next_trade_takes_its_nonce(
    env: Env,
) -> None:
    nonce_before = await env.w3.eth.get_transaction_count(env.wallet)
    usdc_before = await erc20_balance(env.w3, env.token("USDC"), env.wallet)
    intent, _ = await swap_usdc_for_weth(env)
    approve, swap = await trade_tx(env, intent, "approve"), await trade_tx(env, intent)
    assert (approve.nonce, swap.nonce) == (nonce_before, nonce_before + 1)
    assert len((await read_journal(env.journal, all_runs=True)).fills) == 1

    # The approval's and the swap's blocks are replaced by empty ones: the trade never was.
    await env.devnet.call("anvil_reorg", [2, []])
    assert await env.sender.get_receipt(swap.tx_hash) is None
    assert await erc20_balance(env.w3, env.token("USDC"), env.wallet) == usdc_before

    watch = FinalityWatch(env.sender, env.journal, CONFIRMATIONS)
    (change,) = await watch.check(await head(env))

    assert (change.outcome, change.intent_id, change.after) == (REORGED_OUT, intent.id, None)
    record = await env.journal.get_intent(intent.id)
    assert record.status == IntentStatus.REORGED
    assert record.status_detail is not None and "reorged out" in record.status_detail
    journaled = await env.journal.get_fill(intent.id)
    assert journaled is not None and journaled.finality == FILL_REORGED
    assert [(await env.journal.get_tx(t.tx_hash)).status for t in (approve, swap)] == [
        TxStatus.DROPPED,
        TxStatus.DROPPED,
    ]
    # counted nowhere: no fill in the totals, the trades view says what became of it
    summary = await read_journal(env.journal, all_runs=True)
    assert summary.fills == [] and summary.realised_profit_usd == 0.0
    assert [f.intent_id for f in summary.voided] == [intent.id]
    (row,) = (await list_trades(env.journal, all_runs=True)).trades
    assert row.status == "reorged out"
    assert await watch.check(await head(env)) == []  # settled once

    # The next trade reuses the freed nonces: none skipped (it mines), none used twice.
    again, refill = await swap_usdc_for_weth(env)
    approve_again, swap_again = await trade_tx(env, again, "approve"), await trade_tx(env, again)
    assert (approve_again.nonce, swap_again.nonce) == (approve.nonce, swap.nonce)
    assert refill.block_number is not None
    assert await env.w3.eth.get_transaction_count(env.wallet) == nonce_before + 2
    assert await erc20_balance(env.w3, env.token("USDC"), env.wallet) == usdc_before - (
        refill.amount_in
    )


async def test_a_trade_back_in_the_mempool_waits_then_moves_with_its_block(env: Env) -> None:
    intent, fill = await swap_usdc_for_weth(env)
    approve, swap = await trade_tx(env, intent, "approve"), await trade_tx(env, intent)
    await env.devnet.call("anvil_reorg", [2, []])
    watch = FinalityWatch(env.sender, env.journal, CONFIRMATIONS)
    await env.devnet.call("evm_setAutomine", [False])
    try:
        # both signed transactions come back to the node's pool (as a node re-queues the
        # transactions of the blocks a reorg dropped), not yet mined
        for tx in (approve, swap):
            await env.devnet.call("eth_sendRawTransaction", ["0x" + tx.raw_tx.hex()])
        (waiting,) = await watch.check(await head(env))
        assert (waiting.outcome, waiting.after) == (REQUEUED, None)
        assert "waits in the mempool" in waiting.detail
        assert await watch.check(await head(env)) == []  # said once
        journaled = await env.journal.get_fill(intent.id)
        assert journaled is not None and journaled.finality == FILL_PENDING  # still counted

        await env.devnet.call("evm_mine", [])
    finally:
        await env.devnet.call("evm_setAutomine", [True])
    (moved,) = await watch.check(await head(env))
    assert moved.outcome == MOVED and moved.after is not None
    assert moved.after.block_number == await head(env) != fill.block_number
    assert moved.after.amount_out == fill.amount_out  # the same state, the same swap


async def test_a_trade_reincluded_where_it_reverts_voids_the_fill_as_reverted(env: Env) -> None:
    whale = Whale(env)
    await whale.approve("USDC", 400_000 * 10**6)
    intent, fill = await swap_usdc_for_weth(env)
    swap = await trade_tx(env, intent)

    # A whale's large USDC -> WETH buy lands first: our swap's minimum out no longer holds.
    await whale.reorg_with_swap_first(1, "USDC", "WETH", 400_000 * 10**6, swap.raw_tx, 0)
    receipt = await env.sender.get_receipt(swap.tx_hash)
    assert receipt is not None and receipt.status == 0

    (change,) = await FinalityWatch(env.sender, env.journal, CONFIRMATIONS).check(await head(env))

    assert (change.outcome, change.after) == (REVERTED, None)
    record = await env.journal.get_intent(intent.id)
    assert record.status == IntentStatus.REVERTED
    assert record.status_detail is not None and "reverted" in record.status_detail
    journaled_swap = await env.journal.get_tx(swap.tx_hash)
    assert (journaled_swap.status, journaled_swap.block_number) == (
        TxStatus.REVERTED,
        receipt.block_number,
    )
    assert fill.intent_id not in {f.intent_id for f in await env.journal.list_fills()}
