"""Start-up reconciliation of the journal with the chain.

``Reconciler`` runs at start-up (and may run any time): every non-final journal row is checked
against the chain, so a crash at any point neither loses nor repeats a trade.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from web3 import AsyncWeb3

from agent.chain.l1fee import ChainFees
from agent.chain.tx import Receipt, TransactionSender
from agent.errors import BroadcastRejected
from agent.execution.settlement import (
    _mined_receipts,
    fill_from_receipt,
    finality_at_settlement,
    with_l1_fees,
)
from agent.store.journal import Journal, TxRecord
from agent.store.models import IntentStatus, TxStatus

log = logging.getLogger(__name__)

TRADE_PURPOSES = frozenset({"swap", "arb"})


@dataclass
class ReconcileReport:
    """Counts from one reconciliation pass."""

    mined: int = 0
    reverted: int = 0
    replaced: int = 0
    dropped: int = 0
    rebroadcast: int = 0
    still_pending: int = 0
    intents_filled: int = 0
    intents_reverted: int = 0
    intents_cancelled: int = 0
    notes: list[str] = field(default_factory=list)


class Reconciler:
    """Brings every non-final journal row in line with the chain.

    Needs no key: a journaled transaction is already signed, so rebroadcasting it is sending
    its raw bytes again. Per (sender, nonce) group of journaled transactions:

    * one of them has a receipt -> it is mined/reverted, the others are replaced;
    * none has, but the account's mined nonce has passed it -> dropped (its nonce went to a
      transaction we did not journal);
    * sent in a relay bundle -> never rebroadcast: dropped (not included) once the chain has
      passed the bundle's last target block, else still pending;
    * still pending in the node's pool -> keep tracking; unknown to the node -> rebroadcast the
      newest one (the highest fees) and track it, unless the deadline of the intent it serves
      has passed on chain (it could only revert and cost gas): then it is marked dropped.

    A nonce still pending after the wait is held in the sender's nonce manager (a private RPC's
    or a relay's transaction is invisible to the public node's pending count).

    Then every non-final intent: no transaction -> cancelled (interrupted before signing);
    trade mined -> fill from its receipt; trade reverted -> reverted; otherwise cancelled.
    An intent is never executed a second time.
    """

    def __init__(
        self,
        sender: TransactionSender,
        journal: Journal,
        receipt_grace_s: float | None = None,
        l1_fees: ChainFees | None = None,
        confirmations: int = 1,
    ) -> None:
        self.sender = sender
        # a fill it settles awaits these confirmations like any other (``execution.finality``)
        self.confirmations = confirmations
        self.journal = journal
        # L2s: the L1 data fee (and operator fee) of receipts that do not carry it
        self.l1_fees = l1_fees
        # the sender's grace by default: "nonce too low" and reconciliation agree on it
        self.receipt_grace_s = (
            sender.receipt_grace_s if receipt_grace_s is None else receipt_grace_s
        )

    async def reconcile(self, wait_s: float = 60.0) -> ReconcileReport:
        """One full pass; waits up to ``wait_s`` seconds for transactions still in the pool."""
        report = ReconcileReport()
        groups: dict[tuple[int, str, int], list[TxRecord]] = {}
        for tx in await self.journal.list_non_final():
            groups.setdefault((tx.chain_id, tx.sender, tx.nonce), []).append(tx)
        pending: list[tuple[int, list[str]]] = []
        for (chain_id, sender, nonce), _ in sorted(groups.items(), key=lambda kv: kv[0]):
            siblings = await self.journal.txs_with_nonce(chain_id, sender, nonce)
            waiting = await self._reconcile_nonce(sender, nonce, siblings, report)
            if waiting:
                pending.append((nonce, waiting))
        for nonce, hashes in pending:
            receipt = await self.sender.wait_for_receipt(hashes, wait_s)
            if receipt is None:
                rows = [await self.journal.get_tx(tx_hash) for tx_hash in hashes]
                bundled = [r for r in rows if r.bundle_last_block is not None]
                if bundled and not await self._reconcile_bundle(nonce, bundled, report):
                    continue  # its last target block passed while we waited: closed
                report.still_pending += 1
                report.notes.append(f"no receipt yet for {hashes[-1]}")
                # a private RPC's or a relay's pending transaction is invisible to the public
                # node's pending count: its nonce must not be handed out again
                await self.sender.nonces.hold(nonce)
                continue
            await self._record(receipt, hashes, report)
        await self._reconcile_intents(report)
        # Whatever happened, the next local nonce must follow the chain.
        await self.sender.nonces.resync()
        return report

    async def _record(
        self, receipt: Receipt, hashes: Sequence[str], report: ReconcileReport
    ) -> None:
        non_final = []
        for tx_hash in hashes:
            row = await self.journal.get_tx(tx_hash)
            if row.status in (TxStatus.SIGNED, TxStatus.SENT):
                non_final.append(tx_hash)
        await self.sender.record_outcome(receipt, non_final)
        if receipt.status == 1:
            report.mined += 1
        else:
            report.reverted += 1
        report.replaced += len([h for h in non_final if h != receipt.tx_hash])

    async def _reconcile_nonce(
        self, sender: str, nonce: int, siblings: Sequence[TxRecord], report: ReconcileReport
    ) -> list[str]:
        hashes = [tx.tx_hash for tx in siblings]
        # The nonce is read BEFORE the receipts: a block mined in between then shows up in the
        # receipts, so "nonce passed and no receipt" really means another transaction took it.
        mined_nonce = await self.sender.read_w3.eth.get_transaction_count(
            AsyncWeb3.to_checksum_address(sender), "latest"
        )
        for tx in siblings:
            receipt = await self.sender.get_receipt(tx.tx_hash)
            if receipt is not None:
                await self._record(receipt, hashes, report)
                return []
        non_final = [tx for tx in siblings if tx.status in (TxStatus.SIGNED, TxStatus.SENT)]
        if mined_nonce > nonce:
            # The state may run ahead of the receipt index (Anvil right after mining, RPC load
            # balancers mixing nodes): give the receipts a grace period before calling it lost.
            receipt = await self.sender.wait_for_receipt(hashes, self.receipt_grace_s)
            if receipt is not None:
                await self._record(receipt, hashes, report)
                return []
            for tx in non_final:
                await self.journal.mark_dropped(
                    tx.tx_hash, f"nonce {nonce} was used by a transaction not in the journal"
                )
                report.dropped += 1
            return []
        if any(tx.bundle_last_block is not None for tx in non_final):
            return await self._reconcile_bundle(nonce, non_final, report)
        in_pool = []
        for tx in non_final:
            if await self.sender.node_knows(tx.tx_hash):
                in_pool.append(tx)
                if tx.status == TxStatus.SIGNED:
                    await self.journal.mark_sent(tx.tx_hash)
        if not in_pool:
            newest = non_final[-1]
            expired = await self._deadline_passed(newest)
            if expired is not None:
                for tx in non_final:
                    await self.journal.mark_dropped(tx.tx_hash, expired)
                    report.dropped += 1
                report.notes.append(f"{newest.tx_hash} not rebroadcast: {expired}")
                return []
            try:
                await self.sender.broadcast(newest.raw_tx)
            except BroadcastRejected as exc:
                await self.journal.mark_dropped(
                    newest.tx_hash, f"rebroadcast rejected: {exc.reason}"
                )
                report.dropped += 1
                for tx in non_final[:-1]:
                    await self.journal.mark_dropped(tx.tx_hash, "superseded; rebroadcast failed")
                    report.dropped += 1
                return []
            if newest.status == TxStatus.SIGNED:
                await self.journal.mark_sent(newest.tx_hash)
            report.rebroadcast += 1
            log.warning("rebroadcast %s (nonce %d)", newest.tx_hash, nonce)
        return hashes

    async def _reconcile_bundle(
        self, nonce: int, non_final: Sequence[TxRecord], report: ReconcileReport
    ) -> list[str]:
        """A bundle transaction without a receipt whose nonce is still free: never rebroadcast
        (that would make it public); not included once the chain has passed the bundle's last
        target block (dropped; the nonce is free again), else still pending."""
        last_block = max(tx.bundle_last_block or 0 for tx in non_final)
        # the nonce before the head: a bundle landing in between keeps its nonce used
        mined_nonce = await self.sender.read_w3.eth.get_transaction_count(
            AsyncWeb3.to_checksum_address(non_final[0].sender), "latest"
        )
        head = int(await self.sender.read_w3.eth.block_number)
        if head < last_block or mined_nonce > nonce:
            return [tx.tx_hash for tx in non_final]
        for tx in non_final:
            await self.journal.mark_dropped(
                tx.tx_hash, f"bundle not included: not in any block up to {last_block}"
            )
            report.dropped += 1
        await self.sender.nonces.expire(nonce)  # a hold this process took is given back
        report.notes.append(f"bundle of {non_final[-1].tx_hash} not included")
        return []

    async def _deadline_passed(self, tx: TxRecord) -> str | None:
        """Why ``tx`` must not be rebroadcast (its intent's deadline passed on chain), or None.
        The chain's clock decides: it is what the contracts check."""
        if tx.intent_id is None:
            return None
        intent = (await self.journal.get_intent(tx.intent_id)).intent
        block = await self.sender.read_w3.eth.get_block("latest")
        if int(block["timestamp"]) < intent.deadline:
            return None
        return f"the deadline {intent.deadline} of intent {intent.id} has passed; not rebroadcast"

    async def _reconcile_intents(self, report: ReconcileReport) -> None:
        for record in await self.journal.list_non_final_intents():
            intent = record.intent
            txs = await self.journal.txs_for_intent(intent.id)
            if any(tx.status in (TxStatus.SIGNED, TxStatus.SENT) for tx in txs):
                continue  # still in flight: tracking or the next pass settles it
            if record.status == IntentStatus.PENDING and record.mode == "paper":
                await self.journal.set_intent_status(
                    intent.id, IntentStatus.CANCELLED, "interrupted before the paper fill"
                )
                report.intents_cancelled += 1
                continue
            trades = [tx for tx in txs if tx.purpose in TRADE_PURPOSES]
            mined = [tx for tx in trades if tx.status == TxStatus.MINED]
            reverted = [tx for tx in trades if tx.status == TxStatus.REVERTED]
            if mined:
                receipt = await self.sender.get_receipt(mined[0].tx_hash)
                if receipt is None:
                    report.notes.append(f"journal says {mined[0].tx_hash} mined; node disagrees")
                    continue
                gas_receipts = await with_l1_fees(
                    await _mined_receipts(self.sender, txs), self.l1_fees
                )
                fill = fill_from_receipt(
                    intent,
                    record.mode,
                    mined[0],
                    receipt,
                    gas_receipts,
                    finality_at_settlement(self.confirmations),
                )
                await self.journal.record_fill(fill)
                report.intents_filled += 1
            elif reverted:
                reason = await self.sender.replay_revert_reason(reverted[0].tx_hash)
                await self.journal.set_intent_status(
                    intent.id, IntentStatus.REVERTED, f"{reverted[0].tx_hash}: {reason}"
                )
                report.notes.append(f"intent {intent.id} reverted: {reason}")
                report.intents_reverted += 1
            else:
                detail = (
                    "interrupted before signing"
                    if not txs
                    else "its bundle was not included"
                    if any(tx.bundle_hash is not None for tx in trades)
                    else "no trade transaction reached the chain"
                )
                await self.journal.set_intent_status(intent.id, IntentStatus.CANCELLED, detail)
                report.intents_cancelled += 1
