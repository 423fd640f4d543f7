"""Fill finality: a chain fill is final after ``execution.confirmations``; a reorged fill is
reconciled.

A fill settles at its first receipt, recorded with the receipt's block number and hash. With
``confirmations`` above 1 it is pending confirmation until the head is ``confirmations - 1``
blocks past its block while that block is still canonical; then it is final. ``FinalityWatch``
checks every pending fill at each new head, one ``eth_getTransactionReceipt`` per fill (a
receipt names the canonical block that holds the transaction, so a replaced block shows as a
changed hash or a missing receipt), and only on a change reads more:

* same block hash, deep enough: the fill is final;
* the receipt names another block: a reorg re-included the transaction. Mined: the fill moves to
  the new block with its realised amounts read again from the new receipt. Reverted there: the
  fill is void and the intent ``reverted``;
* no receipt, the node still has the transaction in its pool: it waits to be mined again (said
  once); no receipt and unknown to the node: the fill is void (``reorged``) and the nonce
  manager resyncs with the chain, so the nonce the lost transaction held is used again by the
  next transaction, neither skipped (a gap would strand every later one) nor used twice.

The engine applies what each check returns to the books (today's PnL, metrics, events). Amounts
are ``int`` in smallest units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from agent.chain.l1fee import ChainFees
from agent.chain.tx import Receipt, TransactionSender
from agent.errors import TemporaryError
from agent.execution.settlement import _mined_receipts, fill_from_receipt, with_l1_fees
from agent.store.journal import Journal
from agent.store.models import TxStatus
from agent.types import FILL_FINAL, FILL_PENDING, Fill, Intent

log = logging.getLogger(__name__)

# ``FinalityChange.outcome``
FINAL = "final"
MOVED = "moved"
REORGED_OUT = "reorged_out"
REVERTED = "reverted"
REQUEUED = "requeued"
# outcomes after which the fill counts nowhere
VOIDED = frozenset({REORGED_OUT, REVERTED})


@dataclass(frozen=True, slots=True)
class FinalityChange:
    """What a check found for one pending fill: ``before`` as it was journaled, ``after`` as it
    is now (the final or moved fill; ``None`` when void or waiting in the mempool)."""

    outcome: str
    intent: Intent
    before: Fill
    after: Fill | None
    detail: str

    @property
    def intent_id(self) -> str:
        return self.intent.id

    @property
    def strategy(self) -> str:
        return self.intent.strategy


def _short(value: str | None) -> str:
    return "-" if not value else f"{value[:10]}…"


class FinalityWatch:
    """Checks the journal's pending fills against the chain at each new head."""

    def __init__(
        self,
        sender: TransactionSender,
        journal: Journal,
        confirmations: int,
        l1_fees: ChainFees | None = None,
    ) -> None:
        self.sender = sender
        self.journal = journal
        self.confirmations = confirmations
        self.l1_fees = l1_fees
        self._requeued: set[str] = set()  # intents said to wait in the mempool
        self._resync_due = False  # a voided fill's nonce not yet resynced (the node failed)

    async def check(self, head: int) -> list[FinalityChange]:
        """One pass at chain head ``head``; the changes it journaled, oldest fill first.

        A fill whose reads fail (a temporary node error) is checked again at the next head;
        what was journaled for the others is returned all the same, so the caller's books
        never miss a change the journal already holds."""
        changes = []
        for fill in await self.journal.unconfirmed_fills():
            if fill.tx_hash is None:
                continue
            try:
                intent = (await self.journal.get_intent(fill.intent_id)).intent
                found = await self._check(fill, fill.tx_hash, head, intent)
            except TemporaryError as exc:
                log.warning("fill %s not checked at head %d: %s", fill.intent_id, head, exc)
                continue
            if found is None:
                continue
            outcome, after, detail = found
            changes.append(FinalityChange(outcome, intent, fill, after, detail))
            log.log(
                logging.INFO if outcome == FINAL else logging.WARNING,
                "fill %s: %s",
                fill.intent_id,
                detail,
            )
        if self._resync_due or any(c.outcome in VOIDED for c in changes):
            # The lost transaction's nonce is free again on chain: the next send takes it.
            try:
                await self.sender.nonces.resync()
                self._resync_due = False
            except TemporaryError as exc:
                self._resync_due = True
                log.warning("nonce resync after a reorg failed (retried next head): %s", exc)
        return changes

    async def _check(
        self, fill: Fill, tx_hash: str, head: int, intent: Intent
    ) -> tuple[str, Fill | None, str] | None:
        receipt = await self.sender.get_receipt(tx_hash)
        if receipt is not None and (receipt.block_number, receipt.block_hash) == (
            fill.block_number,
            fill.block_hash,
        ):
            self._requeued.discard(fill.intent_id)
            depth = head - receipt.block_number + 1
            if depth >= self.confirmations and await self.journal.confirm_fill(fill.intent_id):
                detail = f"final: block {receipt.block_number} has {depth} confirmations"
                return FINAL, replace(fill, finality=FILL_FINAL), detail
            return None
        if receipt is None:
            return await self._lost(fill, tx_hash)
        self._requeued.discard(fill.intent_id)
        moved = (
            f"a reorg moved {_short(tx_hash)} from block {fill.block_number} "
            f"({_short(fill.block_hash)}) to block {receipt.block_number}"
        )
        if receipt.status != 1:
            detail = f"{moved}, where it reverted: the fill is void"
            await self.journal.void_fill(
                fill.intent_id, detail, reverted_in_block=receipt.block_number
            )
            return REVERTED, None, detail
        after = await self._refilled(fill, receipt, intent)
        await self.journal.move_fill(after, moved)
        return MOVED, after, moved

    async def _lost(self, fill: Fill, tx_hash: str) -> tuple[str, Fill | None, str] | None:
        """No block holds the transaction any more."""
        replaced = f"block {fill.block_number} ({_short(fill.block_hash)}) was replaced by a reorg"
        if await self.sender.node_knows(tx_hash):
            if fill.intent_id in self._requeued:
                return None
            self._requeued.add(fill.intent_id)
            return REQUEUED, None, f"{replaced}; {_short(tx_hash)} waits in the mempool again"
        self._requeued.discard(fill.intent_id)
        detail = f"reorged out: {replaced} and no block holds {_short(tx_hash)} any more"
        also_gone = [
            tx.tx_hash
            for tx in await self.journal.txs_for_intent(fill.intent_id)
            if tx.status == TxStatus.MINED
            and tx.tx_hash != tx_hash
            and await self.sender.get_receipt(tx.tx_hash) is None
        ]
        await self.journal.void_fill(fill.intent_id, detail, also_gone=also_gone)
        return REORGED_OUT, None, detail

    async def _refilled(self, fill: Fill, receipt: Receipt, intent: Intent) -> Fill:
        """The fill as the new receipt has it (amounts and gas read again), still pending;
        its USD profit is left for the engine to price at the new block."""
        trade_tx = await self.journal.get_tx(receipt.tx_hash)
        gas_receipts = await with_l1_fees(
            await _mined_receipts(self.sender, await self.journal.txs_for_intent(fill.intent_id)),
            self.l1_fees,
        )
        after = fill_from_receipt(intent, fill.mode, trade_tx, receipt, gas_receipts, FILL_PENDING)
        return replace(after, predicted_profit_usd=fill.predicted_profit_usd)
