"""Shared set-up for the execution tests: a journal on a temp SQLite file and a sender."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from web3 import AsyncWeb3

from agent.chain.nonce import NonceManager
from agent.chain.tx import FeePolicy, StepHook, TransactionSender
from agent.execution.tx_journal import JournaledTxs
from agent.store import Journal, init_db, session_factory
from agent.wallet.keystore import Signer

GWEI = 10**9
DEFAULT_POLICY = FeePolicy(max_fee_per_gas_cap_wei=500 * GWEI, priority_fee_wei=GWEI)


@asynccontextmanager
async def journal_at(path: Path) -> AsyncIterator[Journal]:
    engine = await init_db(f"sqlite:///{path}")
    try:
        yield Journal(session_factory(engine))
    finally:
        await engine.dispose()


async def make_sender(
    w3: AsyncWeb3[Any],
    private_key_hex: str,
    journal: Journal,
    policy: FeePolicy = DEFAULT_POLICY,
    submit_w3: AsyncWeb3[Any] | None = None,
    on_step: StepHook | None = None,
) -> TransactionSender:
    signer = Signer(bytes.fromhex(private_key_hex.removeprefix("0x")))
    return TransactionSender(
        read_w3=w3,
        submit_w3=submit_w3 or w3,
        signer=signer,
        nonces=NonceManager(w3, signer.address),
        journal=JournaledTxs(journal),
        chain_id=await w3.eth.chain_id,
        fee_policy=policy,
        on_step=on_step,
        receipt_poll_s=0.05,
    )
