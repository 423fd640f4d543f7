"""Transaction journaling: the store-backed ``TxJournal`` the chain's ``TransactionSender`` writes
to. Each row is written before the I/O it describes, so a crash at any instant leaves a journal
that start-up reconciliation can bring in line with the chain."""

from __future__ import annotations

from collections.abc import Sequence

from agent.chain.tx import Receipt, SentTx
from agent.store.journal import Journal


class JournaledTxs:
    """``TxJournal`` and ``BundleJournal`` over the agent's ``Journal`` (one row per signed
    transaction)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def signed(self, tx: SentTx, chain_id: int, sender: str) -> None:
        await self.journal.record_signed_tx(
            tx_hash=tx.tx_hash,
            raw_tx=tx.raw_tx,
            chain_id=chain_id,
            sender=sender,
            nonce=tx.nonce,
            purpose=tx.request.purpose,
            gas_limit=tx.gas_limit,
            max_fee_per_gas_wei=tx.fees.max_fee_per_gas_wei,
            max_priority_fee_per_gas_wei=tx.fees.max_priority_fee_per_gas_wei,
            to_address=tx.request.to,
            value_wei=tx.request.value_wei,
            intent_id=tx.intent_id,
        )

    async def sent(self, tx_hash: str) -> None:
        await self.journal.mark_sent(tx_hash)

    async def rejected(self, tx_hash: str, reason: str) -> None:
        await self.journal.mark_dropped(tx_hash, f"broadcast rejected: {reason}")

    async def bundled(self, tx_hash: str, bundle_hash: str, last_block: int) -> None:
        await self.journal.mark_bundled(tx_hash, bundle_hash, last_block)

    async def not_included(self, tx_hash: str, reason: str) -> None:
        await self.journal.mark_dropped(tx_hash, f"bundle not included: {reason}")

    async def settled(self, receipt: Receipt, siblings: Sequence[str]) -> None:
        if receipt.status == 1:
            await self.journal.mark_mined(
                receipt.tx_hash,
                receipt.block_number,
                receipt.gas_used,
                receipt.effective_gas_price_wei,
            )
        else:
            await self.journal.mark_reverted(
                receipt.tx_hash,
                receipt.block_number,
                receipt.gas_used,
                receipt.effective_gas_price_wei,
            )
        for tx_hash in siblings:
            if tx_hash != receipt.tx_hash:
                await self.journal.mark_replaced(tx_hash, receipt.tx_hash)
