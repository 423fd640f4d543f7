"""The signing policy and the sender's last steps before the key, on the devnet: the simulated
balance changes it measures, a transaction nobody vouched for, replacements and cancels that are
simulated first, no rebroadcast after a deadline, and "nonce too low" settled with the receipt
grace when the read node lags."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from eth_abi import encode
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.abi import v2_pair_address
from agent.chain.rpc import RpcClient
from agent.chain.tx import Fees, TxMandate, TxRequest
from agent.devnet import Devnet
from agent.errors import SigningRefused, SimulationRevert, TemporaryError
from agent.events import EventBus, SigningRefusal
from agent.execution import ChainExecutor, DexContracts, ExecutionSettings, erc20_balance
from agent.execution.policy import SigningPolicy
from agent.execution.reconcile import Reconciler
from agent.store import IntentStatus, TxStatus
from agent.types import Intent, RouteHop
from tests.chain._execution_helpers import journal_at, make_sender
from tests.chain.test_tx import _FirstReplyLost, install, reverting_runtime
from tests.fakes.rpc_proxy import FaultyRpcProxy

pytestmark = pytest.mark.chain

ATTACKER = "0x000000000000000000000000000000000000dEaD"
TRANSFER = keccak(text="transfer(address,uint256)")[:4]


def policy_for(w3: AsyncWeb3, devnet: Devnet, wallet: str) -> SigningPolicy:
    a = devnet.addresses
    return SigningPolicy(
        w3,
        wallet,
        DexContracts.from_addresses(a),
        watched_tokens=[a["USDC"], a["WETH"], a["DAI"]],
    )


async def test_the_probe_measures_what_a_call_would_take_from_the_wallet(
    w3: AsyncWeb3, devnet: Devnet
) -> None:
    """The balance measurement itself: a simulated ``transfer(attacker, 1000 USDC)`` made by the
    wallet shows exactly that loss, and the policy names it, while the chain stays unchanged."""
    a = devnet.addresses
    wallet = devnet.accounts[5][0]
    policy = policy_for(w3, devnet, wallet)
    usdc_before = await erc20_balance(w3, a["USDC"], wallet)
    calldata = TRANSFER + encode(["address", "uint256"], [ATTACKER, 1_000 * 10**6])
    mandate = TxMandate("approve", token=a["USDC"], spender=a["uniswap_v2.router"])

    changes = await policy.simulate_balances(a["USDC"], calldata, mandate)

    moved = {(c.token, c.holder): c.delta for c in changes if c.delta != 0}
    assert moved == {(a["USDC"], wallet): -1_000 * 10**6}
    (usdc,) = [c for c in changes if c.token == a["USDC"]]
    assert usdc.before == usdc_before
    assert policy.balance_problem(mandate, changes) == (
        f"1000000000 of {a['USDC']} would leave the wallet"
    )
    assert await erc20_balance(w3, a["USDC"], wallet) == usdc_before  # only simulated


async def test_a_transaction_without_a_mandate_is_refused_before_signing(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    address, key = devnet.accounts[5]
    nonce_before = await w3.eth.get_transaction_count(address)
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        sender.guard = policy_for(w3, devnet, address)
        with pytest.raises(SigningRefused, match="no mandate"):
            await sender.send(TxRequest(to=ATTACKER, value_wei=0))
        with pytest.raises(SigningRefused, match="never sends ETH"):
            await sender.send(TxRequest(to=address, value_wei=1, mandate=TxMandate("cancel")))
        assert await journal.list_txs() == []
    assert await w3.eth.get_transaction_count(address) == nonce_before


async def test_a_replacement_that_would_now_revert_is_not_signed(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    _, key = devnet.accounts[5]
    target = "0x000000000000000000000000000000000000bEEF"
    await install(w3, target, b"\x00")  # STOP: any call succeeds
    base_fee = int((await w3.eth.get_block("latest"))["baseFeePerGas"])
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        low = Fees(max_fee_per_gas_wei=base_fee * 2, max_priority_fee_per_gas_wei=1)
        stuck = await sender.send(TxRequest(to=target, data=b"\x01", purpose="swap"), fees=low)
        # The world moved: the same call now reverts. Re-signing it would only burn gas.
        await install(w3, target, reverting_runtime(b""))
        with pytest.raises(SimulationRevert):
            await sender.replace(stuck)
        # A cancel is simulated too (an empty self-transfer: it passes) and goes out.
        cancel = await sender.cancel(stuck)
        assert [tx.tx_hash for tx in await journal.list_txs()] == [stuck.tx_hash, cancel.tx_hash]


def intent_until(deadline: int, token: str) -> Intent:
    hop = RouteHop("0x" + "11" * 20, "uniswap_v2", "v2", token, token, 3000)
    return Intent(
        id=f"swap-{uuid.uuid4().hex[:8]}",
        strategy="test",
        kind="swap",
        route=(hop,),
        token_in=token,
        token_out=token,
        amount_in=1,
        min_amount_out=0,
        predicted_amount_out=1,
        predicted_profit=0,
        predicted_profit_usd=0.0,
        deadline=deadline,
    )


async def test_nothing_is_rebroadcast_after_its_deadline(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    """A journaled transaction the node forgot, whose intent's deadline has passed on chain:
    reconciliation marks it dropped instead of sending it again (it could only revert)."""
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    now = int((await w3.eth.get_block("latest"))["timestamp"])
    intent = intent_until(now + 60, devnet.addresses["WETH"])
    async with journal_at(tmp_path / "agent.db") as journal:
        await journal.record_intent(intent, "fork")
        sender = await make_sender(w3, key, journal)
        mandate = TxMandate("swap", intent)
        sent = await sender.send(
            TxRequest(to=recipient, value_wei=0, purpose="swap", mandate=mandate),
            intent_id=intent.id,
        )
        await w3.provider.make_request("anvil_dropTransaction", [sent.tx_hash])  # type: ignore[arg-type]
        await w3.provider.make_request("evm_increaseTime", [120])  # type: ignore[arg-type]
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        report = await Reconciler(sender, journal).reconcile(wait_s=0)

        assert (report.rebroadcast, report.dropped) == (0, 1)
        row = await journal.get_tx(sent.tx_hash)
        assert row.status == TxStatus.DROPPED
        assert not await sender.node_knows(sent.tx_hash)
        assert (await journal.get_intent(intent.id)).status == IntentStatus.CANCELLED
    assert await w3.eth.get_transaction_count(address, "pending") == sent.nonce


async def test_tracking_does_not_rebroadcast_an_evicted_transaction_after_its_deadline(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    now = int((await w3.eth.get_block("latest"))["timestamp"])
    intent = intent_until(now + 60, devnet.addresses["WETH"])
    async with journal_at(tmp_path / "agent.db") as journal:
        await journal.record_intent(intent, "fork")
        sender = await make_sender(w3, key, journal)
        sender.mempool_check_s = 0.1
        request = TxRequest(to=recipient, purpose="swap", mandate=TxMandate("swap", intent))
        sent = await sender.send(request, intent_id=intent.id)
        await w3.provider.make_request("anvil_dropTransaction", [sent.tx_hash])  # type: ignore[arg-type]
        await w3.provider.make_request("evm_increaseTime", [120])  # type: ignore[arg-type]
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        with pytest.raises(TemporaryError, match="no receipt"):
            await sender.track(sent, timeout_s=1.0)

        assert not await sender.node_knows(sent.tx_hash)  # it could only have reverted
    assert await w3.eth.get_transaction_count(address, "pending") == sent.nonce


class _LaggingReadNode(FaultyRpcProxy):
    """A read node behind the one that took our transaction: the first ``lag`` lookups of a
    transaction or its receipt answer "unknown"."""

    def __init__(self, upstream_url: str, lag: int) -> None:
        super().__init__(upstream_url, failure_rate=0.0)
        self.lag = lag

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = json.loads(body)
        lookups = ("eth_getTransactionByHash", "eth_getTransactionReceipt")
        if call.get("method") in lookups and self.lag > 0:
            self.lag -= 1
            reply = {"jsonrpc": "2.0", "id": call["id"], "result": None}
            return web.json_response(reply)
        return web.Response(body=await self._forward(body), content_type="application/json")


async def test_nonce_too_low_from_a_lagging_read_node_does_not_send_the_trade_twice(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    """The submit node took the transaction and mined it, but its reply was lost; the retry is
    refused "nonce too low", and the read node does not know the transaction yet. Within the
    receipt grace it does: the send is ours and mined, not dropped and signed again."""
    address, key = devnet.accounts[7]
    nonce_before = await w3.eth.get_transaction_count(address)
    async with (
        _FirstReplyLost(devnet.rpc_url, failure_rate=1.0, faults=("truncated",)) as submit_proxy,
        RpcClient([submit_proxy.url], backoff_initial_s=0.01) as submit,
        _LaggingReadNode(devnet.rpc_url, lag=4) as read_proxy,
        journal_at(tmp_path / "agent.db") as journal,
    ):
        lagging = AsyncWeb3(AsyncHTTPProvider(read_proxy.url))
        try:
            sender = await make_sender(lagging, key, journal, submit_w3=submit.web3())
            request = TxRequest(to=address, value_wei=1, gas_limit=21_000, purpose="swap")
            sent = await sender.send(request, simulate=False)
        finally:
            await lagging.provider.disconnect()

        assert submit_proxy.injected["truncated"] == 1
        assert read_proxy.lag == 0  # the read node really lagged
        assert await w3.eth.get_transaction_count(address) == nonce_before + 1
        (journaled,) = await journal.list_txs()
        assert journaled.tx_hash == sent.tx_hash and journaled.status != TxStatus.DROPPED


class _NoStateOverrides(FaultyRpcProxy):
    """A node that serves everything but ``eth_call`` with a state override."""

    def __init__(self, upstream_url: str) -> None:
        super().__init__(upstream_url, failure_rate=0.0)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = json.loads(body)
        if call.get("method") == "eth_call" and len(call.get("params", [])) > 2:
            error = {"code": -32602, "message": "state overrides are not supported"}
            return web.json_response({"jsonrpc": "2.0", "id": call["id"], "error": error})
        return web.Response(body=await self._forward(body), content_type="application/json")


async def test_a_node_that_cannot_measure_balance_changes_gets_nothing_signed(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    """Fail closed: without the simulated balance changes the policy signs nothing (not even
    the approval), journals why and publishes the refusal."""
    address, key = devnet.accounts[4]
    a = devnet.addresses
    nonce_before = await w3.eth.get_transaction_count(address)
    async with (
        _NoStateOverrides(devnet.rpc_url) as proxy,
        journal_at(tmp_path / "agent.db") as journal,
    ):
        node = AsyncWeb3(AsyncHTTPProvider(proxy.url))
        try:
            sender = await make_sender(node, key, journal)
            events = EventBus()
            refusals: list[SigningRefusal] = []
            events.subscribe(refusals.append, SigningRefusal)
            contracts = DexContracts.from_addresses(a)
            sender.guard = SigningPolicy(
                node, address, contracts, watched_tokens=[a["USDC"]], events=events
            )
            hop = RouteHop(
                v2_pair_address(a["uniswap_v2.factory"], a["USDC"], a["WETH"]),
                "uniswap_v2",
                "v2",
                a["USDC"],
                a["WETH"],
                3000,
            )
            intent = Intent(
                id=f"swap-{uuid.uuid4().hex[:8]}",
                strategy="test",
                kind="swap",
                route=(hop,),
                token_in=a["USDC"],
                token_out=a["WETH"],
                amount_in=1_000 * 10**6,
                min_amount_out=1,
                predicted_amount_out=1,
                predicted_profit=0,
                predicted_profit_usd=0.0,
                deadline=2**40,
            )
            settings = ExecutionSettings(mode="fork", receipt_timeout_s=30)
            outcome = await ChainExecutor(sender, journal, contracts, settings).execute(intent)
        finally:
            await node.provider.disconnect()

        assert outcome.status == IntentStatus.FAILED
        assert outcome.detail is not None and "cannot simulate" in outcome.detail
        assert await journal.txs_for_intent(intent.id) == []
        (refusal,) = refusals
        assert (refusal.rule, refusal.purpose) == ("simulation", "approve")
    assert await w3.eth.get_transaction_count(address) == nonce_before
