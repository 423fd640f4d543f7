"""The paper executor: intents filled from local exact math, cross-checked on chain with
``eth_call``; no key, no transaction.

Amounts are ``int`` in smallest units throughout; ``slippage_bps`` is in basis points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import decode, encode
from web3 import AsyncWeb3

from agent.chain.abi import eth_call
from agent.errors import FatalError, InsufficientPaperBalance, SimulationRevert
from agent.execution.common import (
    AGGREGATOR_KIND,
    SEL_QUOTE_EXACT_INPUT_SINGLE,
    SEL_V2_GET_AMOUNTS_OUT,
    DexContracts,
    ExecutionOutcome,
    min_amount_out,
    min_profit,
)
from agent.store.journal import Journal
from agent.store.models import IntentStatus
from agent.types import Fill, Intent, RouteHop

log = logging.getLogger(__name__)


class PaperExecutor:
    """Fills intents from local exact math, cross-checked against the chain with ``eth_call``.

    No key, no transaction. The chain quote comes from the DEXes' own view functions for each
    hop (V2 ``Router02.getAmountsOut``, V3 ``QuoterV2.quoteExactInputSingle``) at the latest
    block, whose number the fill records (``block_number``); when it differs from the local
    prediction the chain wins and the difference is logged. An aggregator route cannot be
    verified with ``eth_call`` and fails. The virtual portfolio lives in the journal
    (``paper_balances``) and moves in the same DB transaction as the fill.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        journal: Journal,
        contracts: DexContracts,
        slippage_bps: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.w3 = w3
        self.journal = journal
        self.contracts = contracts
        self.slippage_bps = slippage_bps
        self._clock = clock

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
            )
            await self.journal.record_fill(fill, move_paper_balances=True)
        except (SimulationRevert, InsufficientPaperBalance) as exc:
            reason = exc.reason if isinstance(exc, SimulationRevert) else str(exc)
            await self.journal.set_intent_status(intent.id, IntentStatus.FAILED, reason)
            return ExecutionOutcome(intent.id, IntentStatus.FAILED, detail=reason)
        return ExecutionOutcome(intent.id, IntentStatus.FILLED, fill=fill)
