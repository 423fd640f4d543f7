"""The paper executor: intents filled from local exact math, cross-checked on chain with
``eth_call``; no key, no transaction. A paper fill pays the costs the intent was predicted
to pay (L2 gas and, on an L2, the L1 data fee), so paper PnL is not optimistic.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3

from agent.chain.abi import eth_call
from agent.chain.arb_executor import encode_execute, hops_from_route
from agent.chain.l1fee import ChainFees, ExtraFees
from agent.errors import FatalError, InsufficientPaperBalance, SimulationRevert
from agent.execution.chain import encode_router_swap
from agent.execution.common import (
    AGGREGATOR_KIND,
    SEL_QUOTE_EXACT_INPUT_SINGLE,
    SEL_V2_GET_AMOUNTS_OUT,
    SWAP_ROUTER,
    DexContracts,
    ExecutionOutcome,
    min_amount_out,
    min_profit,
)
from agent.store.journal import Journal
from agent.store.models import IntentStatus
from agent.types import Fill, Intent, RouteHop

log = logging.getLogger(__name__)

# Paper mode has no wallet: the swaps it prices pay a stand-in recipient (an address's 20
# bytes compress as little as a real one's); an arbitrage without an ArbExecutor, the zero one.
_PAPER_RECIPIENT = to_checksum_address(keccak(b"defi-agent paper wallet")[12:])
_NO_ADDRESS = "0x" + "00" * 20


class PaperExecutor:
    """Fills intents from local exact math, cross-checked against the chain with ``eth_call``.

    No key, no transaction. The chain quote comes from the DEXes' own view functions for each
    hop (V2 ``Router02.getAmountsOut``, V3 ``QuoterV2.quoteExactInputSingle``) at the latest
    block, whose number the fill records (``block_number``); when it differs from the local
    prediction the chain wins and the difference is logged. An aggregator route cannot be
    verified with ``eth_call`` and fails. The virtual portfolio lives in the journal
    (``paper_balances``) and moves in the same DB transaction as the fill.

    Costs: the fill pays its intent's predicted L2 gas and L1 data fee (``l1_fees`` prices the
    latter, as :meth:`extra_fees`, from the calldata the live executor would send: the OP
    stack's ``getL1FeeUpperBound``, Arbitrum's NodeInterface).
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        journal: Journal,
        contracts: DexContracts,
        slippage_bps: int = 50,
        clock: Callable[[], float] = time.time,
        l1_fees: ChainFees | None = None,
    ) -> None:
        self.w3 = w3
        self.journal = journal
        self.contracts = contracts
        self.slippage_bps = slippage_bps
        self._clock = clock
        self.l1_fees = l1_fees

    async def extra_fees(self, intent: Intent, gas_units: int) -> ExtraFees:
        """What the chain would charge the transaction carrying ``intent`` out beyond
        ``gas_units x price`` (wei): priced from its calldata as the live executor would build
        it (no wallet, so no exact unsigned transaction)."""
        if self.l1_fees is None:
            return ExtraFees()
        if intent.kind == "arb":
            hops = hops_from_route(intent.route, self.contracts.factories)
            floor = max(
                intent.min_amount_out - intent.amount_in,
                min_profit(intent.predicted_profit, self.slippage_bps),
            )
            data = encode_execute(hops, intent.token_in, intent.amount_in, floor, intent.deadline)
            to = self.contracts.arb_executor or _NO_ADDRESS
        else:
            dex = intent.route[0].dex  # a router swap's hops share one DEX
            data = encode_router_swap(
                intent,
                _PAPER_RECIPIENT,
                intent.min_amount_out,
                intent.deadline,
                self.contracts.router_kinds.get(dex, SWAP_ROUTER),
            )
            to = self.contracts.routers.get(dex, _NO_ADDRESS)
        return await self.l1_fees.predict(to, data, gas_units)

    async def quote_route(
        self, route: Sequence[RouteHop], amount_in: int, block: int | str = "latest"
    ) -> int:
        """The route's output (smallest units) for ``amount_in`` at ``block``, hop by hop from
        on-chain quoters. Exact as long as no pool appears twice in the route."""
        amount = amount_in
        for hop in route:
            if hop.kind == AGGREGATOR_KIND:
                raise SimulationRevert("paper mode cannot verify an aggregator route on chain")
            if hop.kind == "v2":
                router = self.contracts.routers.get(hop.dex)
                if router is None:
                    raise FatalError(f"no router known for {hop.dex}")
                data = SEL_V2_GET_AMOUNTS_OUT + encode(
                    ["uint256", "address[]"], [amount, [hop.token_in, hop.token_out]]
                )
                (amounts,) = decode(["uint256[]"], await eth_call(self.w3, router, data, block))
                amount = int(amounts[-1])
            else:
                if self.contracts.quoter_v2 is None:
                    raise FatalError("no QuoterV2 known for V3 paper quotes")
                data = SEL_QUOTE_EXACT_INPUT_SINGLE + encode(
                    ["(address,address,uint256,uint24,uint160)"],
                    [(hop.token_in, hop.token_out, amount, hop.fee_pips, 0)],
                )
                out = await eth_call(self.w3, self.contracts.quoter_v2, data, block)
                amount = int.from_bytes(out[:32], "big")
        return amount

    async def execute(self, intent: Intent) -> ExecutionOutcome:
        """Journal ``intent``, quote it on chain, and fill it against the paper portfolio."""
        await self.journal.record_intent(intent, "paper")
        try:
            if intent.deadline <= int(self._clock()):
                raise SimulationRevert(f"intent deadline {intent.deadline} has passed")
            # one block for every hop, recorded on the fill: the quote can be replayed
            block = int(await self.w3.eth.block_number)
            chain_out = await self.quote_route(intent.route, intent.amount_in, block)
            if chain_out != intent.predicted_amount_out:
                log.warning(
                    "paper %s: local math predicted %d, the chain quotes %d (diff %d)",
                    intent.id,
                    intent.predicted_amount_out,
                    chain_out,
                    chain_out - intent.predicted_amount_out,
                )
            floor = max(
                intent.min_amount_out,
                min_amount_out(intent.predicted_amount_out, self.slippage_bps),
            )
            if intent.kind == "arb":
                floor = max(
                    floor, intent.amount_in + min_profit(intent.predicted_profit, self.slippage_bps)
                )
            if chain_out < floor:
                raise SimulationRevert(f"output {chain_out} below the minimum {floor}")
            fill = Fill(
                intent_id=intent.id,
                mode="paper",
                tx_hash=None,
                token_in=intent.token_in,
                token_out=intent.token_out,
                amount_in=intent.amount_in,
                amount_out=chain_out,
                profit=chain_out - intent.amount_in if intent.kind == "arb" else 0,
                predicted_amount_in=intent.amount_in,
                predicted_amount_out=intent.predicted_amount_out,
                predicted_profit=intent.predicted_profit,
                predicted_profit_usd=intent.predicted_profit_usd,
                opportunity_id=intent.opportunity_id,
                block_number=block,
                # Paid as predicted: L2 execution (operator fee included) and the L1 data fee.
                gas_cost_wei=intent.predicted_gas_cost_wei + intent.predicted_l1_fee_wei,
                l1_fee_wei=intent.predicted_l1_fee_wei,
                predicted_gas_cost_wei=intent.predicted_gas_cost_wei,
                predicted_l1_fee_wei=intent.predicted_l1_fee_wei,
            )
            await self.journal.record_fill(fill, move_paper_balances=True)
        except (SimulationRevert, InsufficientPaperBalance) as exc:
            reason = exc.reason if isinstance(exc, SimulationRevert) else str(exc)
            await self.journal.set_intent_status(intent.id, IntentStatus.FAILED, reason)
            return ExecutionOutcome(intent.id, IntentStatus.FAILED, detail=reason)
        return ExecutionOutcome(intent.id, IntentStatus.FILLED, fill=fill)
