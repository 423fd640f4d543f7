"""Fifty concurrent intents from one account get fifty distinct consecutive nonces, all mined."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from web3 import AsyncWeb3

from agent.chain.nonce import NonceManager
from agent.chain.tx import TxRequest
from agent.devnet import Devnet
from agent.store import TxStatus
from tests.chain._execution_helpers import journal_at, make_sender

pytestmark = pytest.mark.chain


async def test_fifty_concurrent_sends_get_consecutive_nonces_and_all_mine(
    w3: AsyncWeb3, devnet: Devnet, tmp_path: Path
) -> None:
    address, key = devnet.accounts[5]
    recipient = devnet.accounts[6][0]
    start = await w3.eth.get_transaction_count(address, "pending")
    recipient_before = await w3.eth.get_balance(recipient)

    async with journal_at(tmp_path / "agent.db") as journal:
        sender = await make_sender(w3, key, journal)

        async def one_intent(i: int) -> int:
            sent = await sender.send(
                TxRequest(to=recipient, value_wei=10**15 + i, purpose="transfer")
            )
            receipt, _ = await sender.track(sent, timeout_s=60)
            assert receipt.status == 1
            return sent.nonce

        nonces = await asyncio.gather(*(one_intent(i) for i in range(50)))

        assert sorted(nonces) == list(range(start, start + 50))
        assert await w3.eth.get_transaction_count(address, "latest") == start + 50
        # Every transfer landed, each exactly once.
        received = await w3.eth.get_balance(recipient) - recipient_before
        assert received == sum(10**15 + i for i in range(50))
        mined = await journal.list_txs([TxStatus.MINED])
        assert sorted(t.nonce for t in mined) == list(range(start, start + 50))
        assert await journal.list_non_final() == []


async def test_released_nonce_is_reused_and_resync_follows_the_chain(
    w3: AsyncWeb3, devnet: Devnet
) -> None:
    address, _ = devnet.accounts[7]
    manager = NonceManager(w3, address)
    first = await manager.allocate()
    second = await manager.allocate()
    third = await manager.allocate()
    assert (second, third) == (first + 1, first + 2)

    # A send that failed before broadcast gives its nonce back: the next allocation reuses it.
    await manager.release(second)
    assert await manager.allocate() == second
    await manager.release(third)
    assert await manager.allocate() == third

    # Someone else used the account (another process): "nonce too low" -> resync jumps forward.
    for nonce in (first, second, third):
        await manager.mark_broadcast(nonce)
    await w3.eth.send_transaction({"from": address, "to": address, "value": 0})
    await w3.eth.send_transaction({"from": address, "to": address, "value": 0})
    await w3.eth.send_transaction({"from": address, "to": address, "value": 0})
    await w3.eth.send_transaction({"from": address, "to": address, "value": 0})
    assert await manager.resync() == first + 4
    assert await manager.allocate() == first + 4
