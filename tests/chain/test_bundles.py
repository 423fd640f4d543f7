"""Private submission on the devnet: arbitrage as Flashbots-style bundles through the relay fake
(simulated at the relay first, requests signed with a separate reputation key, included whole
in one block or not at all), nonces never reused while a bundle or a protect-RPC transaction is
pending, and a bundle left pending by a crash reconciled by a new agent instance."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from eth_abi import encode
from pydantic import SecretStr
from web3 import AsyncWeb3

from agent.chain.abi import SEL_APPROVE
from agent.chain.bundle import STEP_BUNDLE_SIMULATED, BundleSender
from agent.chain.nonce import NonceManager
from agent.chain.relay import RelayClient
from agent.chain.tx import STEP_JOURNALED, TransactionSender, TxMandate, TxRequest
from agent.devnet.traders import swap_v2
from agent.execution import ChainExecutor, ExecutionSettings, Reconciler, erc20_balance
from agent.execution.tx_journal import JournaledTxs
from agent.store import IntentStatus, TxStatus
from agent.types import Intent
from agent.wallet.keystore import (
    KeystorePassword,
    Signer,
    create_keystore,
    generate_private_key,
    unlock_keystore,
)
from tests.chain import test_execution
from tests.chain._execution_helpers import make_sender
from tests.chain.test_execution import Env, arb_setup, make_intent, predict
from tests.fakes.relay_fake import ProtectRpcFake, RelayFake

pytestmark = pytest.mark.chain
env = test_execution.env  # the execution tests' fixture: a wallet, its journal and sender

TARGET_BLOCKS = 3


@dataclass
class Bundling:
    env: Env
    relay: RelayFake
    session: aiohttp.ClientSession
    reputation: Signer
    reputation_password: str
    reputation_key: bytes

    def bundles(self, sender: TransactionSender | None = None) -> BundleSender:
        relay = RelayClient(self.relay.url, self.session, self.reputation)
        return BundleSender(
            sender or self.env.sender, [relay], TARGET_BLOCKS, JournaledTxs(self.env.journal)
        )

    def executor(
        self,
        executor_address: str,
        sender: TransactionSender | None = None,
        receipt_timeout_s: float = 60,
    ) -> ChainExecutor:
        sender = sender or self.env.sender
        return ChainExecutor(
            sender,
            self.env.journal,
            self.env.guarded(executor_address),
            ExecutionSettings(mode="fork", slippage_bps=0, receipt_timeout_s=receipt_timeout_s),
            bundles=self.bundles(sender),
        )


@pytest.fixture
async def bundling(env: Env, tmp_path: Path) -> AsyncIterator[Bundling]:
    # the reputation key lives in its own encrypted keystore, unlocked with its own password
    key = generate_private_key()
    password = f"reputation-{uuid.uuid4().hex}"
    path = tmp_path / "keys" / "reputation.json"
    create_keystore(path, SecretStr(password), key, scrypt_n=2**4)
    reputation = unlock_keystore(path, KeystorePassword(SecretStr(password), "prompt", "prompt"))
    async with RelayFake(env.devnet.rpc_url) as relay, aiohttp.ClientSession() as session:
        yield Bundling(env, relay, session, reputation, password, key)


async def chain_nonce(w3: AsyncWeb3, address: str) -> int:
    return int(await w3.eth.get_transaction_count(AsyncWeb3.to_checksum_address(address)))


async def close_price_gap(env: Env) -> None:
    """The whale sells WETH back into uniswap_v2: the arbitrage's profit is gone."""
    assert env.devnet.rpc is not None
    await swap_v2(
        env.devnet.rpc,
        dex="uniswap_v2",
        router=env.devnet.addresses["uniswap_v2.router"],
        trader=env.devnet.accounts[2][0],
        path=[env.token("WETH"), env.token("USDC")],
        amount_in=150 * 10**18,
    )


def once_at(step: str, action: Callable[[], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
    done = False

    async def hook(name: str) -> None:
        nonlocal done
        if name == step and not done:
            done = True
            await action()

    return hook


def approve_request(env: Env, symbol: str, amount: int) -> TxRequest:
    router = env.devnet.addresses["uniswap_v2.router"]
    token = env.token(symbol)
    return TxRequest(
        to=token,
        data=SEL_APPROVE + encode(["address", "uint256"], [router, amount]),
        purpose="approve",
        mandate=TxMandate("approve", token=token, spender=router, amount=amount),
    )


async def arb_intent(env: Env) -> tuple[str, Intent]:
    executor, route = await arb_setup(env)
    amount_in = 20 * 10**18
    return executor, make_intent("arb", route, amount_in, await predict(env.w3, route, amount_in))


async def weth_balances(env: Env, executor: str) -> tuple[int, int]:
    weth = env.token("WETH")
    return (
        await erc20_balance(env.w3, weth, executor),
        await erc20_balance(env.w3, weth, env.wallet),
    )


async def test_arbitrage_bundle_is_simulated_then_signed_by_the_reputation_key_and_lands(
    bundling: Bundling,
) -> None:
    env, relay = bundling.env, bundling.relay
    executor, intent = await arb_intent(env)
    before, _ = await weth_balances(env, executor)

    outcome = await bundling.executor(executor).execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    assert outcome.fill is not None and outcome.fill.profit == intent.predicted_profit
    assert (await weth_balances(env, executor))[0] == before + outcome.fill.profit
    methods = [c.method for c in relay.calls]
    assert methods[0] == "eth_callBundle"  # simulated before anything was submitted
    assert methods[1:] == ["eth_sendBundle"] * TARGET_BLOCKS
    # every relay request was signed by the reputation key, never by the trading key
    assert relay.signers == {bundling.reputation.address}
    assert bundling.reputation.address != env.wallet
    (trade,) = await env.journal.txs_for_intent(intent.id)
    assert trade.status == TxStatus.MINED and trade.bundle_hash is not None
    assert relay.included == [(trade.bundle_hash, trade.block_number)]


async def test_a_bundle_lands_whole_in_one_block(bundling: Bundling) -> None:
    env = bundling.env
    bundles = bundling.bundles()
    pending = await bundles.send(
        [approve_request(env, "USDC", 1_000), approve_request(env, "DAI", 2_000)]
    )

    receipts = await bundles.track(pending, timeout_s=30)

    assert receipts is not None and len(receipts) == 2
    assert {r.status for r in receipts} == {1}
    assert receipts[0].block_number == receipts[1].block_number  # one block, both
    assert bundling.relay.included == [(pending.bundle_hash, receipts[0].block_number)]
    assert [tx.nonce for tx in pending.txs] == [pending.txs[0].nonce, pending.txs[0].nonce + 1]


async def test_a_bundle_reverting_in_the_relay_simulation_is_never_sent(
    bundling: Bundling,
) -> None:
    env = bundling.env
    executor, intent = await arb_intent(env)
    # the gap closes between our own simulation (the signing policy) and the relay's
    sender = await make_sender(
        env.w3, env.key, env.journal, on_step=once_at(STEP_JOURNALED, lambda: close_price_gap(env))
    )
    nonce_before = await chain_nonce(env.w3, env.wallet)
    before = await weth_balances(env, executor)

    outcome = await bundling.executor(executor, sender).execute(intent)

    assert outcome.status == IntentStatus.FAILED
    assert "bundle simulation" in (outcome.detail or "")
    assert [c.method for c in bundling.relay.calls] == ["eth_callBundle"]
    assert bundling.relay.included == []
    assert await weth_balances(env, executor) == before  # nothing lost
    (trade,) = await env.journal.txs_for_intent(intent.id)
    assert trade.status == TxStatus.DROPPED
    assert "bundle not included" in str(trade.status_history[-1]["detail"])
    # the nonce is free again: the next transaction takes it
    assert await chain_nonce(env.w3, env.wallet) == nonce_before
    assert await sender.nonces.allocate() == nonce_before


async def test_a_bundle_reverting_in_its_target_blocks_is_never_included(
    bundling: Bundling,
) -> None:
    env, relay = bundling.env, bundling.relay
    executor, intent = await arb_intent(env)
    # the relay's simulation passes; the gap closes before the target block
    simulated = asyncio.Event()

    async def gap_closes() -> None:
        await close_price_gap(env)
        simulated.set()

    sender = await make_sender(
        env.w3, env.key, env.journal, on_step=once_at(STEP_BUNDLE_SIMULATED, gap_closes)
    )
    nonce_before = await chain_nonce(env.w3, env.wallet)
    before = await weth_balances(env, executor)
    trade = asyncio.create_task(bundling.executor(executor, sender).execute(intent))
    await asyncio.wait_for(simulated.wait(), 30)
    while not trade.done():  # the chain moves on through every target block
        await relay.mine_block()
        await asyncio.sleep(0.05)

    outcome = trade.result()

    assert outcome.status == IntentStatus.FAILED
    assert "not included" in (outcome.detail or "")
    assert [c.method for c in relay.calls].count("eth_sendBundle") == TARGET_BLOCKS
    assert relay.included == []
    assert await weth_balances(env, executor) == before  # nothing lost
    (row,) = await env.journal.txs_for_intent(intent.id)
    assert row.status == TxStatus.DROPPED and row.bundle_hash is not None
    assert "bundle not included" in str(row.status_history[-1]["detail"])
    assert await chain_nonce(env.w3, env.wallet) == nonce_before
    assert await sender.nonces.allocate() == nonce_before  # released


async def test_no_nonce_is_reused_while_a_bundle_is_pending(bundling: Bundling) -> None:
    env, relay = bundling.env, bundling.relay
    relay.paused = True  # the relay holds the bundle
    bundles = bundling.bundles()
    pending = await bundles.send([approve_request(env, "USDC", 1_000)])
    bundle_nonce = pending.txs[0].nonce
    # the public node does not see it, and a resync (the periodic reconciliation) reads it
    assert await env.w3.eth.get_transaction_count(env.wallet, "pending") == bundle_nonce
    await env.sender.nonces.resync()

    public = await env.sender.send(approve_request(env, "DAI", 2_000))

    assert public.nonce == bundle_nonce + 1
    relay.paused = False
    receipts = await bundles.track(pending, timeout_s=30)
    assert receipts is not None
    receipt, _ = await env.sender.track(public, timeout_s=30)
    assert receipt.status == 1 and receipts[0].status == 1  # both landed, neither displaced


async def protect_sender(env: Env, private_w3: AsyncWeb3) -> TransactionSender:
    """The wallet's sender with a protect RPC as its submit RPC (a fresh nonce manager)."""
    return TransactionSender(
        env.w3,
        private_w3,
        env.sender.signer,
        NonceManager(env.w3, env.wallet),
        JournaledTxs(env.journal),
        await env.w3.eth.chain_id,
        env.sender.fee_policy,
        receipt_poll_s=0.05,
        guard=env.sender.guard,
        private_submit=True,
    )


async def test_no_nonce_is_reused_while_a_protect_rpc_transaction_is_pending(env: Env) -> None:
    async with ProtectRpcFake(env.devnet.rpc_url) as protect:
        private_w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(protect.url))
        sender = await protect_sender(env, private_w3)
        first = await sender.send(approve_request(env, "USDC", 1_000))
        assert await env.w3.eth.get_transaction_count(env.wallet, "pending") == first.nonce
        await sender.nonces.resync()  # what the periodic reconciliation does
        second = await sender.send(approve_request(env, "DAI", 2_000))
        assert second.nonce == first.nonce + 1

        # a restart while both are pending privately: a new instance over the same journal
        restarted = await protect_sender(env, private_w3)
        report = await Reconciler(restarted, env.journal, receipt_grace_s=0.1).reconcile(wait_s=0.0)
        assert report.still_pending == 2
        assert await restarted.nonces.allocate() == second.nonce + 1

        await protect.release()
        for sent in (first, second):
            receipt, _ = await sender.track(sent, timeout_s=30)
            assert receipt.status == 1


async def _pending_bundle_then_crash(bundling: Bundling) -> tuple[str, Intent]:
    """An arbitrage whose bundle the (paused) relay holds when the agent dies."""
    env = bundling.env
    executor, intent = await arb_intent(env)
    bundling.relay.paused = True
    trade = asyncio.create_task(bundling.executor(executor).execute(intent))
    for _ in range(600):
        rows = await env.journal.txs_for_intent(intent.id)
        if rows and rows[0].status == TxStatus.SENT:
            break
        await asyncio.sleep(0.05)
    trade.cancel()  # the agent dies here
    await asyncio.gather(trade, return_exceptions=True)
    return executor, intent


async def _restarted(env: Env) -> TransactionSender:
    return await make_sender(env.w3, env.key, env.journal)


async def test_a_restart_settles_a_pending_bundle_that_landed(bundling: Bundling) -> None:
    env = bundling.env
    executor, intent = await _pending_bundle_then_crash(bundling)
    before, _ = await weth_balances(env, executor)
    bundling.relay.paused = False  # the relay includes it while the agent is down
    for _ in range(600):
        if bundling.relay.included:
            break
        await asyncio.sleep(0.05)
    assert bundling.relay.included, f"the relay did not include it: {bundling.relay.errors}"

    sender = await _restarted(env)
    report = await Reconciler(sender, env.journal).reconcile(wait_s=5.0)

    assert report.mined == 1 and report.intents_filled == 1
    record = await env.journal.get_intent(intent.id)
    assert record.status == IntentStatus.FILLED
    fill = await env.journal.get_fill(intent.id)
    assert fill is not None and fill.profit == intent.predicted_profit
    assert (await weth_balances(env, executor))[0] == before + fill.profit


async def test_a_restart_closes_an_expired_bundle_and_frees_its_nonce(
    bundling: Bundling,
) -> None:
    env = bundling.env
    executor, intent = await _pending_bundle_then_crash(bundling)
    (row,) = await env.journal.txs_for_intent(intent.id)
    before = await weth_balances(env, executor)
    for _ in range(TARGET_BLOCKS + 1):  # the target blocks pass without it
        await bundling.relay.mine_block()

    sender = await _restarted(env)
    report = await Reconciler(sender, env.journal, receipt_grace_s=0.1).reconcile(wait_s=0.0)

    assert report.dropped == 1 and report.intents_cancelled == 1
    assert (await env.journal.get_tx(row.tx_hash)).status == TxStatus.DROPPED
    record = await env.journal.get_intent(intent.id)
    assert record.status == IntentStatus.CANCELLED
    assert "bundle" in (record.status_detail or "")
    assert await weth_balances(env, executor) == before
    assert await sender.nonces.allocate() == row.nonce  # freed
    bundling.relay.paused = False
    assert bundling.relay.included == []


async def test_a_restart_keeps_the_nonce_of_a_bundle_still_pending(bundling: Bundling) -> None:
    env = bundling.env
    _, intent = await _pending_bundle_then_crash(bundling)
    (row,) = await env.journal.txs_for_intent(intent.id)

    sender = await _restarted(env)
    report = await Reconciler(sender, env.journal, receipt_grace_s=0.1).reconcile(wait_s=0.0)

    assert report.still_pending == 1 and report.rebroadcast == 0  # never made public
    assert await sender.nonces.allocate() == row.nonce + 1
    assert (await env.journal.get_tx(row.tx_hash)).status == TxStatus.SENT


async def test_the_reputation_key_and_password_stay_out_of_logs_and_journal(
    bundling: Bundling, caplog: pytest.LogCaptureFixture
) -> None:
    env = bundling.env
    caplog.set_level(logging.DEBUG)
    executor, intent = await arb_intent(env)

    outcome = await bundling.executor(executor).execute(intent)

    assert outcome.status == IntentStatus.FILLED, outcome.detail
    key_hex = bundling.reputation_key.hex()
    journal_bytes = env.db.read_bytes()
    for secret in (key_hex, bundling.reputation_password):
        assert secret not in caplog.text
        assert secret.encode() not in journal_bytes
    assert bytes.fromhex(key_hex) not in journal_bytes


async def test_the_relay_refuses_a_missing_or_forged_signature(bundling: Bundling) -> None:
    relay, session = bundling.relay, bundling.session
    bundle = {"txs": [], "blockNumber": "0x1"}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle", "params": [bundle]})
    forged = f"{bundling.env.wallet}:{bundling.reputation.sign_message('0x' + '00' * 32)}"
    for headers in ({}, {"X-Flashbots-Signature": forged}):
        async with session.post(relay.url, data=body, headers=headers) as response:
            assert response.status == 403
            answer = await response.json()
        assert answer["error"]["code"] == -32600
    assert [(c.status, c.signer) for c in relay.calls] == [(403, None), (403, None)]
    # our client signs what it sends: the relay accepts it and names the reputation key
    client = RelayClient(relay.url, session, bundling.reputation)
    simulation = await client.call_bundle([], await bundling.env.w3.eth.block_number + 1)
    assert simulation.revert_reason is None
    assert relay.calls[-1].signer == bundling.reputation.address


async def test_a_bundle_outliving_its_trade_is_closed_by_the_next_reconciliation(
    bundling: Bundling,
) -> None:
    env = bundling.env
    executor, intent = await arb_intent(env)
    bundling.relay.paused = True
    # the trade task gives up waiting (a stalled chain); the bundle stays with the relay
    outcome = await bundling.executor(executor, receipt_timeout_s=0.5).execute(intent)
    assert outcome.status == IntentStatus.SUBMITTED
    (row,) = await env.journal.txs_for_intent(intent.id)
    for _ in range(TARGET_BLOCKS + 1):
        await bundling.relay.mine_block()

    # the same running agent's periodic pass: its own hold on the nonce is given back
    report = await Reconciler(env.sender, env.journal, receipt_grace_s=0.1).reconcile(wait_s=0.0)

    assert report.dropped == 1 and report.intents_cancelled == 1
    assert await env.sender.nonces.allocate() == row.nonce


async def test_a_restart_during_the_bundle_window_closes_it_once_the_window_passes(
    bundling: Bundling,
) -> None:
    env = bundling.env
    _, intent = await _pending_bundle_then_crash(bundling)
    (row,) = await env.journal.txs_for_intent(intent.id)
    sender = await _restarted(env)

    # start-up reconciliation waits for the bundle while its target blocks go by
    reconciling = asyncio.create_task(
        Reconciler(sender, env.journal, receipt_grace_s=0.1).reconcile(wait_s=2.0)
    )
    for _ in range(TARGET_BLOCKS + 1):
        await bundling.relay.mine_block()
    report = await reconciling

    assert report.dropped == 1 and report.still_pending == 0
    assert (await env.journal.get_tx(row.tx_hash)).status == TxStatus.DROPPED
    assert await sender.nonces.allocate() == row.nonce  # not held: free again
