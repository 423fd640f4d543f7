"""Bundles: signed transactions that land together in one block, or not at all.

``BundleSender.send(requests)``:

    eth_call of each request -> estimateGas + margin -> fees -> consecutive nonces
    -> for each: the signing guard (simulated balance changes, the risk gate's last look),
       the signature, the journal row (``TransactionSender.sign_and_journal``)
    -> ``eth_callBundle`` at the first relay: any transaction reverting there refuses the
       bundle (``SimulationRevert``; nothing was sent, rows dropped, nonces handed back)
    -> ``eth_sendBundle`` to every relay for each of the next ``target_blocks`` blocks
    -> rows ``sent`` with the bundle hash and its last target block; nonces held (the public
       node's pending count does not see a bundle)

Relay requests are signed with the reputation key (``agent.chain.relay``), never the trading
key. ``track`` watches the receipts of the bundle's transactions: included -> journaled like
any mined transaction; the chain past the last target block without them -> not included
(rows dropped, nonces handed back, nothing lost). Start-up reconciliation does the same for a
bundle left pending by a crash (``agent.execution.reconcile``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from eth_utils.crypto import keccak
from web3 import AsyncWeb3

from agent.chain.relay import RelayClient
from agent.chain.tx import Receipt, SentTx, TransactionSender, TxRequest
from agent.errors import AgentError, BroadcastRejected, FatalError, SimulationRevert, TemporaryError

log = logging.getLogger(__name__)

# Steps reported to the sender's step hook, besides its tx_* steps.
STEP_BUNDLE_SIMULATED = "bundle_simulated"
STEP_BUNDLE_SENT = "bundle_sent"


class BundleJournal(Protocol):
    """Where a bundle's fate is recorded (``agent.execution.tx_journal.JournaledTxs``)."""

    async def bundled(self, tx_hash: str, bundle_hash: str, last_block: int) -> None:
        """Relays have ``tx_hash`` in bundle ``bundle_hash`` for blocks up to ``last_block``."""

    async def not_included(self, tx_hash: str, reason: str) -> None:
        """``tx_hash`` never landed and never will: its nonce is free again."""


@dataclass(frozen=True, slots=True)
class PendingBundle:
    """A bundle the relays hold for blocks ``first_block`` .. ``last_block``."""

    txs: tuple[SentTx, ...]
    bundle_hash: str
    first_block: int
    last_block: int


def bundle_hash(txs: Sequence[SentTx]) -> str:
    """Flashbots' bundle hash: keccak256 of the concatenated transaction hashes."""
    return "0x" + keccak(b"".join(bytes.fromhex(tx.tx_hash[2:]) for tx in txs)).hex()


class BundleSender:
    """Sends ``TransactionSender``'s account's transactions as bundles through ``relays``."""

    def __init__(
        self,
        sender: TransactionSender,
        relays: Sequence[RelayClient],
        target_blocks: int,
        journal: BundleJournal | None,
        poll_s: float | None = None,
    ) -> None:
        if not relays or target_blocks < 1:
            raise FatalError("a bundle needs at least one relay and one target block")
        self.sender = sender
        self.relays = tuple(relays)
        self.target_blocks = target_blocks
        self.journal = journal
        self.poll_s = sender.receipt_poll_s if poll_s is None else poll_s

    async def _head(self) -> int:
        return int(await self.sender.read_w3.eth.block_number)

    async def send(
        self, requests: Sequence[TxRequest], intent_id: str | None = None
    ) -> PendingBundle:
        """Simulate, sign, journal, simulate as a bundle at a relay, submit (module docstring).

        Raises ``SimulationRevert`` when any transaction would revert (locally or in the
        relay's simulation), ``BroadcastRejected`` when every relay refused it; in both cases
        nothing can land and the nonces are free again."""
        sender = self.sender
        for request in requests:
            await sender.simulate(request)
        gas_limits = [
            request.gas_limit or await sender.estimate_gas(request) for request in requests
        ]
        fees = await sender.suggest_fees()
        signed: list[SentTx] = []
        try:
            for request, gas_limit in zip(requests, gas_limits, strict=True):
                nonce = await sender.nonces.allocate()
                signed.append(
                    await sender.sign_and_journal(request, nonce, gas_limit, fees, intent_id)
                )
            raw_txs = [tx.raw_tx for tx in signed]
            relay = self.relays[0]
            simulation = await relay.call_bundle(raw_txs, await self._head() + 1)
            if simulation.revert_reason is not None:
                raise SimulationRevert(
                    f"bundle simulation at {relay.name}: {simulation.revert_reason}"
                )
            await sender._step(STEP_BUNDLE_SIMULATED)
            first = await self._head() + 1
            last = first + self.target_blocks - 1
            await self._submit(raw_txs, first, last)
        except BaseException as exc:
            await self._abandon(signed, f"not submitted: {_reason(exc)}")
            raise
        pending = PendingBundle(tuple(signed), bundle_hash(signed), first, last)
        for tx in signed:
            if self.journal is not None:
                await self.journal.bundled(tx.tx_hash, pending.bundle_hash, last)
            await sender.nonces.hold(tx.nonce)
        await sender._step(STEP_BUNDLE_SENT)
        log.info(
            "bundle %s (%d txs, nonce %d) sent for blocks %d-%d to %d relay(s)",
            pending.bundle_hash,
            len(signed),
            signed[0].nonce,
            first,
            last,
            len(self.relays),
        )
        return pending

    async def _submit(self, raw_txs: Sequence[bytes], first: int, last: int) -> None:
        """``eth_sendBundle`` to every relay for each target block. Refused by every relay:
        ``BroadcastRejected``. Any other failure leaves the bundle possibly held by a relay:
        it is tracked like an accepted one (the target blocks decide)."""
        refusals: list[str] = []
        accepted_or_unknown = False
        for relay in self.relays:
            for block in range(first, last + 1):
                try:
                    await relay.send_bundle(raw_txs, block)
                    accepted_or_unknown = True
                except FatalError as exc:
                    refusals.append(str(exc))
                except TemporaryError as exc:
                    log.warning("relay %s, block %d: %s", relay.name, block, exc)
                    accepted_or_unknown = True
        if not accepted_or_unknown:
            raise BroadcastRejected("; ".join(dict.fromkeys(refusals)))

    async def _abandon(self, signed: Sequence[SentTx], reason: str) -> None:
        """Nothing of ``signed`` can land: journal it, hand the nonces back (highest first)."""
        for tx in reversed(signed):
            if self.journal is not None:
                await self.journal.not_included(tx.tx_hash, reason)
            await self.sender.nonces.release(tx.nonce)

    async def track(
        self, bundle: PendingBundle, timeout_s: float = 600.0
    ) -> tuple[Receipt, ...] | None:
        """The receipts of the bundle's transactions once included (journaled as mined or
        reverted), or ``None`` once the chain has passed its last target block without them
        (journaled not included, nonces handed back). ``TemporaryError`` after ``timeout_s``
        (a stalled chain): the rows stay ``sent`` for reconciliation."""
        sender = self.sender
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        first_nonce = bundle.txs[0].nonce
        while True:
            # nonce before receipts: a block mined in between shows up in the receipts
            mined_nonce = await sender.read_w3.eth.get_transaction_count(
                AsyncWeb3.to_checksum_address(sender.address), "latest"
            )
            head = await self._head()
            receipts = await self._receipts(bundle)
            if receipts is not None:
                return receipts
            if mined_nonce > first_nonce:
                # the nonce is used: ours (a lagging receipt index) or a stranger's
                receipt = await sender.wait_for_receipt(
                    [bundle.txs[0].tx_hash], sender.receipt_grace_s
                )
                if receipt is not None:
                    continue
                await self._close(bundle, "its nonce was used by a transaction not in the journal")
                await sender.nonces.resync()
                return None
            if head >= bundle.last_block:
                await self._close(
                    bundle,
                    f"bundle {bundle.bundle_hash} not in blocks {bundle.first_block}-"
                    f"{bundle.last_block}",
                )
                for tx in reversed(bundle.txs):
                    await sender.nonces.expire(tx.nonce)
                return None
            if loop.time() >= deadline:
                raise TemporaryError(
                    f"bundle {bundle.bundle_hash} still pending after {timeout_s} s"
                )
            await asyncio.sleep(self.poll_s)

    async def _receipts(self, bundle: PendingBundle) -> tuple[Receipt, ...] | None:
        receipts = [await self.sender.get_receipt(tx.tx_hash) for tx in bundle.txs]
        found = [r for r in receipts if r is not None]
        if not found:
            return None
        if len(found) != len(receipts):
            # a relay lands a bundle whole: the others are in the same block, index lagging
            rest = [tx.tx_hash for tx, r in zip(bundle.txs, receipts, strict=True) if r is None]
            for tx_hash in rest:
                receipt = await self.sender.wait_for_receipt([tx_hash], self.sender.receipt_grace_s)
                if receipt is not None:
                    found.append(receipt)
        for receipt in found:
            await self.sender.record_outcome(receipt, [receipt.tx_hash])
        log.info("bundle %s included in block %d", bundle.bundle_hash, found[0].block_number)
        return tuple(sorted(found, key=lambda r: [t.tx_hash for t in bundle.txs].index(r.tx_hash)))

    async def _close(self, bundle: PendingBundle, reason: str) -> None:
        log.warning("bundle %s not included: %s", bundle.bundle_hash, reason)
        if self.journal is not None:
            for tx in bundle.txs:
                await self.journal.not_included(tx.tx_hash, reason)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SimulationRevert | BroadcastRejected):
        return exc.reason
    if isinstance(exc, AgentError):
        return str(exc)
    return type(exc).__name__
