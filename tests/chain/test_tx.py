"""Transactions on the devnet: simulation with decoded reverts, fee caps, a separate submit RPC,
replacement of a stuck transaction and cancellation (Anvil automine off)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_abi import encode
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from agent.chain.gas import GasOracle
from agent.chain.rpc import RpcClient
from agent.chain.tx import FeePolicy, Fees, TxRequest, custom_error_decoder
from agent.devnet import Devnet
from agent.devnet.node import DEV_ACCOUNTS, AnvilNode
from agent.errors import BroadcastRejected, FeeCapExceeded, SimulationRevert
from agent.store import TxStatus
from tests.chain._execution_helpers import journal_at, make_sender
from tests.fakes.rpc_proxy import FaultyRpcProxy

pytestmark = pytest.mark.chain


def reverting_runtime(revert_data: bytes) -> bytes:
    """Runtime code that reverts with ``revert_data`` whatever it is called with."""
    size = len(revert_data)
    assert size < 256
    # CODECOPY(0, 12, size); REVERT(0, size); then the data itself at code offset 12.
    prefix = bytes([0x60, size, 0x60, 12, 0x60, 0, 0x39, 0x60, size, 0x60, 0, 0xFD])
    return prefix + revert_data


async def install(w3: AsyncWeb3, address: str, runtime: bytes) -> None:
    await w3.provider.make_request("anvil_setCode", [address, "0x" + runtime.hex()])  # type: ignore[arg-type]


async def test_simulation_decodes_error_panic_and_custom_errors(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    _, key = devnet.accounts[5]
    target = "0x000000000000000000000000000000000000bEEF"
    custom_abi = [
        {
            "type": "error",
            "name": "TooLate",
            "inputs": [
                {"name": "deadline", "type": "uint256"},
                {"name": "owner", "type": "address"},
            ],
        }
    ]
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        sender.revert_decoders = (custom_error_decoder(custom_abi),)
        cases = [
            (
                bytes.fromhex("08c379a0") + encode(["string"], ["UniswapV2Router: EXPIRED"]),
                "UniswapV2Router: EXPIRED",
            ),
            (
                bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]),
                "Panic(0x11: arithmetic overflow or underflow)",
            ),
            (
                keccak(text="TooLate(uint256,address)")[:4]
                + encode(["uint256", "address"], [42, target]),
                f"TooLate(deadline=42, owner={target.lower()})",
            ),
        ]
        for revert_data, expected in cases:
            await install(w3, target, reverting_runtime(revert_data))
            with pytest.raises(SimulationRevert) as info:
                await sender.send(TxRequest(to=target, data=b"\x01\x02", purpose="swap"))
            assert info.value.reason == expected
            assert info.value.data == revert_data
        # Nothing was signed or journaled for a transaction that would revert.
        assert await journal.list_txs() == []


async def test_a_real_router_revert_reason(w3: AsyncWeb3, devnet: Devnet, tmp_path: Path) -> None:
    address, key = devnet.accounts[5]
    router = w3.eth.contract(
        address=devnet.addresses["uniswap_v2.router"],
        abi=json.loads((Path("abis") / "UniswapV2Router02.json").read_text())["abi"],
    )
    calldata = router.encode_abi(
        "swapExactTokensForTokens",
        [10**6, 0, [devnet.addresses["USDC"], devnet.addresses["WETH"]], address, 1],
    )
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        with pytest.raises(SimulationRevert, match="UniswapV2Router: EXPIRED"):
            await sender.send(TxRequest(to=router.address, data=bytes.fromhex(calldata[2:])))


async def test_fee_cap_refuses_before_signing(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    _, key = devnet.accounts[5]
    async with journal_at(tmp_path / "agent.db") as journal:
        # A cap at exactly the next base fee leaves no room for any tip, whatever the base fee
        # has drifted to after the blocks earlier tests mined.
        next_base_fee = (await GasOracle(w3).gas_price()).next_base_fee_wei
        sender = await make_sender(
            w3,
            key,
            journal,
            policy=FeePolicy(max_fee_per_gas_cap_wei=next_base_fee, priority_fee_wei=1),
        )
        with pytest.raises(FeeCapExceeded):
            await sender.send(TxRequest(to=devnet.accounts[6][0], value_wei=1))
        assert await journal.list_txs() == []


async def test_rejected_broadcast_is_journaled_dropped_and_its_nonce_reused(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    pauper = Account.create()  # no ETH: the node refuses the transaction for lack of funds
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, pauper.key.hex(), journal)
        with pytest.raises(BroadcastRejected, match=r"(?i)insufficient funds"):
            await sender.send(TxRequest(to=devnet.accounts[6][0], gas_limit=21_000), simulate=False)
        (row,) = await journal.list_txs()
        assert row.status == TxStatus.DROPPED and row.nonce == 0
        assert await sender.nonces.allocate() == 0  # the nonce was handed back


class RecordingRpcProxy:
    """A JSON-RPC forwarder to the devnet that records the method names it relayed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.methods: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        for call in body if isinstance(body, list) else [body]:
            self.methods.append(call["method"])
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.upstream, json=body) as upstream,
        ):
            return web.json_response(await upstream.json())


@pytest.fixture
async def proxies(
    devnet: Devnet,
) -> AsyncIterator[tuple[RecordingRpcProxy, str, RecordingRpcProxy, str]]:
    runners, out = [], []
    for _ in range(2):
        proxy = RecordingRpcProxy(devnet.rpc_url)
        app = web.Application()
        app.router.add_post("/", proxy.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runners.append(runner)
        out += [proxy, f"http://127.0.0.1:{port}/"]
    try:
        yield out[0], out[1], out[2], out[3]
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_signed_bytes_go_only_to_the_submit_rpc(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, proxies: Any
) -> None:
    read_proxy, read_url, submit_proxy, submit_url = proxies
    read_w3 = AsyncWeb3(AsyncHTTPProvider(read_url))
    submit_w3 = AsyncWeb3(AsyncHTTPProvider(submit_url))
    _, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    before = await w3.eth.get_balance(recipient)
    try:
        async with journal_at(tmp_path / "agent.db") as journal:
            sender = await make_sender(read_w3, key, journal, submit_w3=submit_w3)
            sent = await sender.send(TxRequest(to=recipient, value_wei=12345))
            receipt, _ = await sender.track(sent, timeout_s=30)
    finally:
        await read_w3.provider.disconnect()
        await submit_w3.provider.disconnect()
    assert receipt.status == 1
    assert await w3.eth.get_balance(recipient) - before == 12345
    assert submit_proxy.methods == ["eth_sendRawTransaction"]
    assert "eth_sendRawTransaction" not in read_proxy.methods
    assert {"eth_call", "eth_estimateGas", "eth_getTransactionReceipt"} <= set(read_proxy.methods)


async def test_stuck_transaction_is_replaced_and_exactly_one_mines(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    before = await w3.eth.get_balance(recipient)
    nonce_before = await w3.eth.get_transaction_count(address, "latest")
    base_fee = int((await w3.eth.get_block("latest"))["baseFeePerGas"])
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        low = Fees(max_fee_per_gas_wei=base_fee * 2, max_priority_fee_per_gas_wei=1)
        stuck = await sender.send(TxRequest(to=recipient, value_wei=777, purpose="swap"), fees=low)
        # No block is produced: the transaction just sits in the pool.
        assert await sender.wait_for_receipt([stuck.tx_hash], timeout_s=0.3) is None

        faster = await sender.replace(stuck)
        assert faster.nonce == stuck.nonce and faster.tx_hash != stuck.tx_hash
        assert faster.fees.max_fee_per_gas_wei >= stuck.fees.max_fee_per_gas_wei * 110 // 100
        assert (
            faster.fees.max_priority_fee_per_gas_wei
            >= stuck.fees.max_priority_fee_per_gas_wei * 110 // 100
        )
        assert await journal.list_non_final() != []

        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        receipt = await sender.wait_for_receipt([stuck.tx_hash, faster.tx_hash], timeout_s=10)
        assert receipt is not None
        await sender.record_outcome(receipt, [stuck.tx_hash, faster.tx_hash])

        assert receipt.tx_hash == faster.tx_hash and receipt.status == 1
        assert await sender.get_receipt(stuck.tx_hash) is None
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert await sender.get_receipt(stuck.tx_hash) is None  # never mines later either
        assert await w3.eth.get_balance(recipient) - before == 777  # paid once
        assert await w3.eth.get_transaction_count(address, "latest") == nonce_before + 1
        assert (await journal.get_tx(faster.tx_hash)).status == TxStatus.MINED
        stuck_row = await journal.get_tx(stuck.tx_hash)
        assert (stuck_row.status, stuck_row.replaced_by) == (TxStatus.REPLACED, faster.tx_hash)
        assert await journal.list_non_final() == []


async def test_cancellation_replaces_with_a_self_transfer(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    before = await w3.eth.get_balance(recipient)
    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)
        sent = await sender.send(TxRequest(to=recipient, value_wei=10**18))
        cancel = await sender.cancel(sent)
        assert cancel.nonce == sent.nonce and cancel.request.to == address
        await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        receipt = await sender.wait_for_receipt([sent.tx_hash, cancel.tx_hash], timeout_s=10)
        assert receipt is not None and receipt.tx_hash == cancel.tx_hash
        await sender.record_outcome(receipt, [sent.tx_hash, cancel.tx_hash])
    assert await w3.eth.get_balance(recipient) == before  # the transfer never happened


async def test_track_replaces_a_stuck_transaction_by_itself(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    """``track`` with ``stuck_after_s`` bumps fees on its own; a block then mines the bump."""
    _, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    base_fee = int((await w3.eth.get_block("latest"))["baseFeePerGas"])
    sent_count = 0
    replacement_sent = asyncio.Event()

    async def on_step(step: str) -> None:
        nonlocal sent_count
        if step == "tx_marked_sent":
            sent_count += 1
            if sent_count == 2:
                replacement_sent.set()

    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal, on_step=on_step)
        sent = await sender.send(
            TxRequest(to=recipient, value_wei=5),
            fees=Fees(max_fee_per_gas_wei=base_fee * 2, max_priority_fee_per_gas_wei=1),
        )

        async def mine_after_replacement() -> None:
            await replacement_sent.wait()
            await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        miner = asyncio.create_task(mine_after_replacement())
        receipt, winner = await sender.track(
            sent, timeout_s=30, stuck_after_s=0.3, max_replacements=1
        )
        await miner
        assert winner.tx_hash != sent.tx_hash and winner.nonce == sent.nonce
        assert receipt.tx_hash == winner.tx_hash
        assert (await journal.get_tx(sent.tx_hash)).status == TxStatus.REPLACED


async def test_a_transaction_evicted_from_the_pool_is_rebroadcast(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path, automine_off: None
) -> None:
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    before = await w3.eth.get_balance(recipient)
    rebroadcast = asyncio.Event()

    async def on_step(step: str) -> None:
        if step == "tx_rebroadcast":
            rebroadcast.set()

    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal, on_step=on_step)
        sender.mempool_check_s = 0.2
        sent = await sender.send(TxRequest(to=recipient, value_wei=4242))
        # The node forgets it (restart, full pool): without a rebroadcast the nonce is a gap.
        await w3.provider.make_request("anvil_dropTransaction", [sent.tx_hash])  # type: ignore[arg-type]
        assert not await sender.node_knows(sent.tx_hash)

        async def mine_after_rebroadcast() -> None:
            await rebroadcast.wait()
            await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        miner = asyncio.create_task(mine_after_rebroadcast())
        receipt, winner = await sender.track(sent, timeout_s=30)
        await miner
    assert winner.tx_hash == receipt.tx_hash == sent.tx_hash
    assert await w3.eth.get_balance(recipient) - before == 4242
    assert await w3.eth.get_transaction_count(address) == sent.nonce + 1


class _FirstReplyLost(FaultyRpcProxy):
    """Forwards everything, but the reply to the first request is cut in half (lost)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await super()._handle(request)
        self.failure_rate = 0.0
        return response


async def test_a_send_whose_reply_was_lost_is_sent_once(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    """The node takes the transaction but the reply is lost; the client's retry is refused as
    "nonce too low". That refusal must not make the trade go out again under a new nonce."""
    address, key = devnet.accounts[7]
    nonce_before = await w3.eth.get_transaction_count(address)
    async with (
        _FirstReplyLost(devnet.rpc_url, failure_rate=1.0, faults=("truncated",)) as proxy,
        RpcClient([proxy.url], backoff_initial_s=0.01) as submit,
        journal_at(tmp_path / "agent.db") as journal,
    ):
        sender = await make_sender(w3, key, journal, submit_w3=submit.web3())
        request = TxRequest(to=address, data=b"", value_wei=1, gas_limit=21_000, purpose="swap")
        sent = await sender.send(request, simulate=False)

        assert proxy.injected["truncated"] == 1  # the first reply really was lost
        # send() may settle on the pending transaction: wait for it to be mined, then count.
        receipt = await w3.eth.wait_for_transaction_receipt(sent.tx_hash, timeout=30)
        assert receipt["status"] == 1
        assert await w3.eth.get_transaction_count(address) == nonce_before + 1
        journaled = await journal.list_txs()
        assert [t.tx_hash for t in journaled] == [sent.tx_hash]
        assert journaled[0].status != TxStatus.DROPPED


async def test_a_chain_without_base_fee_gets_type_0_transactions(tmp_path: Path) -> None:
    """Anvil on Berlin (before London): the sender prices gas the legacy way and signs type-0
    (EIP-155) transactions; a stuck one is replaced by a type-0 one with a higher gasPrice."""
    async with AnvilNode(extra_args=["--hardfork", "berlin"]) as node:
        w3 = AsyncWeb3(AsyncHTTPProvider(node.rpc_url))
        _, key = DEV_ACCOUNTS[5]
        recipient = DEV_ACCOUNTS[6][0]
        async with journal_at(tmp_path / "agent.db") as journal:
            sender = await make_sender(w3, key, journal)
            sent = await sender.send(TxRequest(to=recipient, value_wei=777))
            receipt, _ = await sender.track(sent, timeout_s=30)
            assert receipt.status == 1
            mined = await w3.eth.get_transaction(sent.tx_hash)  # type: ignore[arg-type]
            assert int(mined["type"]) == 0
            assert int(mined["chainId"]) == await w3.eth.chain_id  # EIP-155 replay protection
            assert int(mined["gasPrice"]) == sent.fees.max_fee_per_gas_wei > 0

            await w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
            stuck = await sender.send(TxRequest(to=recipient, value_wei=1))
            bumped = await sender.replace(stuck)
            await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            replacement = await w3.eth.get_transaction(bumped.tx_hash)  # type: ignore[arg-type]
        assert int(replacement["type"]) == 0
        assert int(replacement["gasPrice"]) > int(mined["gasPrice"])
        assert int(replacement["nonce"]) == int(mined["nonce"]) + 1
