"""Settlement (shared by the live path and reconciliation): realised amounts of an intent from
the ``Transfer`` logs of its trade receipt.

Amounts are ``int`` in smallest units throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from agent.chain.l1fee import ChainFees
from agent.chain.tx import Receipt, TransactionSender, net_token_flow, token_transfers
from agent.errors import FatalError
from agent.store.journal import TxRecord
from agent.store.models import TxStatus
from agent.types import FILL_FINAL, FILL_PENDING, Fill, Intent


def _trade_account(intent: Intent, trade_tx: TxRecord) -> str:
    """Whose balances the trade moves: the ArbExecutor for an arbitrage, the wallet for a swap."""
    if intent.kind == "arb":
        if trade_tx.to_address is None:
            raise FatalError(f"arbitrage transaction {trade_tx.tx_hash} has no target")
        return trade_tx.to_address
    return trade_tx.sender


def fill_from_receipt(
    intent: Intent,
    mode: str,
    trade_tx: TxRecord,
    receipt: Receipt,
    gas_receipts: Sequence[Receipt],
    finality: str = FILL_FINAL,
) -> Fill:
    """Realised amounts of ``intent`` from the ``Transfer`` logs of its trade ``receipt``.

    Arbitrage: what left the ArbExecutor in the start token is ``amount_in``, what came back is
    ``amount_out``, the difference the profit. Swap: what left the wallet in ``token_in`` and
    what reached it in ``token_out``. Gas sums every mined transaction of the intent (approvals
    included), in wei, L1 data fees included (``l1_fee_wei`` says how much of it they are).
    The fill carries the receipt's block and block hash, and ``finality`` (see ``Fill``).
    """
    account = _trade_account(intent, trade_tx)
    if intent.kind == "arb":
        outflow = sum(
            amount
            for sender, _, amount in token_transfers(receipt, intent.token_in)
            if sender == account
        )
        inflow = sum(
            amount
            for _, recipient, amount in token_transfers(receipt, intent.token_in)
            if recipient == account
        )
        amount_in, amount_out = outflow, inflow
        profit = inflow - outflow
    else:
        amount_in = -net_token_flow(receipt, intent.token_in, account)
        amount_out = net_token_flow(receipt, intent.token_out, account)
        profit = 0
    return Fill(
        intent_id=intent.id,
        mode=mode,
        tx_hash=receipt.tx_hash,
        token_in=intent.token_in,
        token_out=intent.token_out,
        amount_in=amount_in,
        amount_out=amount_out,
        profit=profit,
        predicted_amount_in=intent.amount_in,
        predicted_amount_out=intent.predicted_amount_out,
        predicted_profit=intent.predicted_profit,
        gas_used=sum(r.gas_used for r in gas_receipts),
        # What left the wallet: L2 execution plus the L1 data fee (OP-stack chains).
        gas_cost_wei=sum(r.gas_cost_wei + (r.l1_fee_wei or 0) for r in gas_receipts),
        l1_fee_wei=sum(r.l1_fee_wei or 0 for r in gas_receipts),
        predicted_gas_cost_wei=intent.predicted_gas_cost_wei,
        predicted_l1_fee_wei=intent.predicted_l1_fee_wei,
        block_number=receipt.block_number,
        predicted_profit_usd=intent.predicted_profit_usd,
        opportunity_id=intent.opportunity_id,
        block_hash=receipt.block_hash,
        finality=finality,
    )


def finality_at_settlement(confirmations: int) -> str:
    """How a chain fill is recorded when its receipt arrives: final at once when one
    confirmation is enough (``execution.confirmations = 1``), else pending confirmation."""
    return FILL_FINAL if confirmations <= 1 else FILL_PENDING


async def _mined_receipts(sender: TransactionSender, txs: Sequence[TxRecord]) -> list[Receipt]:
    receipts = []
    for tx in txs:
        if tx.status in (TxStatus.MINED, TxStatus.REVERTED):
            receipt = await sender.get_receipt(tx.tx_hash)
            if receipt is not None:
                receipts.append(receipt)
    return receipts


async def with_l1_fees(receipts: Sequence[Receipt], l1_fees: ChainFees | None) -> list[Receipt]:
    """``receipts`` with their L1 data fee and operator fee: the node's figures, or (a node
    that gives none, such as an Anvil replica of an L2) the oracle's at each receipt's block."""
    if l1_fees is None:
        return list(receipts)
    priced = []
    for receipt in receipts:
        if receipt.l1_fee_wei is None:
            fee = await l1_fees.realised_l1_fee(
                {"transactionHash": receipt.tx_hash, "blockNumber": receipt.block_number}
            )
            receipt = replace(receipt, l1_fee_wei=fee)
        if receipt.operator_fee_wei is None:
            operator = await l1_fees.realised_operator_fee(
                receipt.gas_used, receipt.block_number, receipt.operator_fee_reported
            )
            receipt = replace(receipt, operator_fee_wei=operator)
        priced.append(receipt)
    return priced
